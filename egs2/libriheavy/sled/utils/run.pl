#!/usr/bin/env perl
# Run a command, or an array of jobs, on this machine with per-job log files.
#
#   run.pl [options] [VAR=START:END] LOGFILE COMMAND [ARGS...]
#
# With VAR=START:END (VAR is usually JOB), jobs START..END run in parallel; every
# occurrence of VAR (not touching a letter or digit) in LOGFILE and in the command is
# replaced by the job number. The log gets the command, the start time, the command's
# stdout+stderr, and the exit code. run.pl exits 0 only if every job did; otherwise it
# names the failed logs.
#
# A single COMMAND argument is run as a shell command line (pipes allowed); several
# arguments are each quoted as needed, so they reach the program unchanged.
#
# Options (accepted for compatibility with cluster launchers; only --max-jobs-run and
# --gpu change anything here):
#   --max-jobs-run N   at most N jobs at once (default: number of CPUs)
#   --gpu N            N > 0 is recorded in the log; local jobs share the visible GPUs
#   --num-threads N, --num-nodes N, --mem X, --time X, --name X, --config F  (ignored)
use strict;
use warnings;
use POSIX qw(strftime :sys_wait_h);
use File::Basename qw(dirname);
use File::Path qw(make_path);

sub usage {
    print STDERR "usage: run.pl [--max-jobs-run N] [--gpu N] [JOB=1:N] LOGFILE COMMAND [ARGS...]\n";
    exit 1;
}

sub ncpus {
    my $n = 0;
    if (open(my $fh, '<', '/proc/cpuinfo')) {
        while (<$fh>) { $n++ if /^processor\s*:/; }
        close($fh);
    }
    return $n > 0 ? $n : 1;
}

my $max_jobs = ncpus();
my $gpu = 0;
my %ignored = map { $_ => 1 } qw(num_threads num_nodes mem time name config max_jobs_run gpu);

while (@ARGV && $ARGV[0] =~ /^--/) {
    my $opt = shift @ARGV;
    my ($name, $value);
    if ($opt =~ /^--([\w-]+)=(.*)$/) { ($name, $value) = ($1, $2); }
    else {
        $name = substr($opt, 2);
        usage() unless @ARGV;
        $value = shift @ARGV;
    }
    $name =~ tr/-/_/;
    if ($name eq 'max_jobs_run') {
        die "run.pl: --max-jobs-run must be a positive integer, got '$value'\n" unless $value =~ /^\d+$/ && $value > 0;
        $max_jobs = $value;
    } elsif ($name eq 'gpu') {
        $gpu = $value;
    } elsif (!$ignored{$name}) {
        die "run.pl: unknown option --$name\n";
    }
}

my ($var, $first, $last) = (undef, 1, 1);
if (@ARGV && $ARGV[0] =~ /^([A-Za-z_]\w*)=(\d+)(?::(\d+))?$/) {
    ($var, $first, $last) = ($1, $2, defined $3 ? $3 : $2);
    shift @ARGV;
    die "run.pl: empty job range $var=$first:$last\n" if $last < $first;
}
usage() if @ARGV < 2;
my $logfile = shift @ARGV;
if (defined $var && $logfile !~ /(?<![A-Za-z0-9])\Q$var\E(?![A-Za-z0-9])/ && $last > $first) {
    die "run.pl: the log file name '$logfile' must contain $var, or all jobs would share one log\n";
}

# Rebuild one shell command line from the arguments.
my $cmd;
if (@ARGV == 1) {
    $cmd = $ARGV[0];
} else {
    my %ops = map { $_ => 1 } ('|', '||', '&&', ';', '>', '>>', '<', '2>', '2>&1', '&>', '|&');
    my @parts;
    for my $a (@ARGV) {
        if ($ops{$a} || $a =~ /^[\w\/\.,:=+\-\@%^]+$/) { push @parts, $a; }
        else { (my $q = $a) =~ s/'/'\\''/g; push @parts, "'$q'"; }
    }
    $cmd = join(' ', @parts);
}

sub subst {
    my ($text, $job) = @_;
    return $text unless defined $var;
    $text =~ s/(?<![A-Za-z0-9])\Q$var\E(?![A-Za-z0-9])/$job/g;
    return $text;
}

sub run_one {
    my ($job) = @_;
    my $log = subst($logfile, $job);
    my $jobcmd = subst($cmd, $job);
    my $dir = dirname($log);
    make_path($dir) unless -d $dir;
    open(my $fh, '>', $log) or die "run.pl: cannot write log file '$log': $!\n";
    my $t0 = time();
    print $fh "# $jobcmd\n";
    print $fh "# Started at " . strftime('%a %b %e %H:%M:%S %Z %Y', localtime) . "\n";
    print $fh "# gpu=$gpu\n" if $gpu;
    close($fh);
    my $rc = system('bash', '-c', "set -o pipefail; ( $jobcmd ) >>" . shell_quote($log) . " 2>&1");
    my $code = $rc == -1 ? 127 : ($rc & 127 ? 128 + ($rc & 127) : $rc >> 8);
    open($fh, '>>', $log) or die "run.pl: cannot append to log file '$log': $!\n";
    print $fh "# Accounting: time=" . (time() - $t0) . " threads=1\n";
    print $fh "# Ended (code $code) at " . strftime('%a %b %e %H:%M:%S %Z %Y', localtime) . "\n";
    close($fh);
    return $code;
}

sub shell_quote {
    my ($s) = @_;
    $s =~ s/'/'\\''/g;
    return "'$s'";
}

my %running;   # pid -> job
my %code;      # job -> exit code
my @queue = ($first .. $last);
while (@queue || %running) {
    while (@queue && scalar(keys %running) < $max_jobs) {
        my $job = shift @queue;
        my $pid = fork();
        die "run.pl: fork failed: $!\n" unless defined $pid;
        if ($pid == 0) { exit(run_one($job) == 0 ? 0 : 1); }
        $running{$pid} = $job;
    }
    my $pid = waitpid(-1, 0);
    last if $pid < 0;
    next unless exists $running{$pid};
    $code{$running{$pid}} = $?;
    delete $running{$pid};
}

my @failed = grep { $code{$_} != 0 } ($first .. $last);
if (@failed) {
    my $n = $last - $first + 1;
    my @logs = map { subst($logfile, $_) } @failed;
    print STDERR "run.pl: " . scalar(@failed) . " / $n failed, log is in " . join(' ', @logs) . "\n";
    exit 1;
}
exit 0;
