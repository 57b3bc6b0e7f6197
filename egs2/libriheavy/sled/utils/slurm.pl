#!/usr/bin/env perl
# Same interface as utils/run.pl, but each job runs on a Slurm cluster.
#
#   slurm.pl [options] [JOB=START:END] LOGFILE COMMAND [ARGS...]
#
# A job script is written to <dir of LOGFILE>/q/<name>.sh and submitted once with
#   sbatch --wait [--array=START-END%MAX] <options from conf/slurm.conf> script
# so slurm.pl blocks until every job has finished, then exits 0 only if all of them
# did, naming the failed logs otherwise. The command runs in the current directory with
# ./path.sh sourced (if present), as run.pl would run it.
#
# Options:
#   --config FILE        default conf/slurm.conf (see that file for its format)
#   --dry-run true       write the job script and print the sbatch command; submit nothing
#   --max-jobs-run N     at most N array tasks at once (%N)
#   --name NAME          Slurm job name (default: from LOGFILE)
#   --NAME VALUE         any option the config maps (gpu, mem, num_threads, time, num_nodes ...)
use strict;
use warnings;
use Cwd qw(getcwd);
use File::Basename qw(dirname basename);
use File::Path qw(make_path);

my $config = 'conf/slurm.conf';
my $dry_run = 'false';
my $max_jobs;
my $jobname;
my %given;    # option name -> value from the command line

while (@ARGV && $ARGV[0] =~ /^--/) {
    my $opt = shift @ARGV;
    my ($name, $value);
    if ($opt =~ /^--([\w-]+)=(.*)$/) { ($name, $value) = ($1, $2); }
    else {
        $name = substr($opt, 2);
        die "slurm.pl: option $opt needs a value\n" unless @ARGV;
        $value = shift @ARGV;
    }
    $name =~ tr/-/_/;
    if    ($name eq 'config')       { $config = $value; }
    elsif ($name eq 'dry_run')      { $dry_run = $value; }
    elsif ($name eq 'max_jobs_run') { $max_jobs = $value; }
    elsif ($name eq 'name')         { $jobname = $value; }
    else                            { $given{$name} = $value; }
}

# --- config ---------------------------------------------------------------------------
my @submit = ('sbatch');
my %defaults;
my %rules;    # name -> [ [pattern, args-template], ... ] ; pattern '*' or a literal value
if (-f $config) {
    open(my $cf, '<', $config) or die "slurm.pl: cannot read $config: $!\n";
    while (my $line = <$cf>) {
        $line =~ s/#.*$//;
        next unless $line =~ /\S/;
        my @w = split(' ', $line);
        my $kind = shift @w;
        if ($kind eq 'command') { @submit = @w; }
        elsif ($kind eq 'default') {
            for my $kv (@w) { my ($k, $v) = split(/=/, $kv, 2); $defaults{$k} = $v; }
        } elsif ($kind eq 'option') {
            my ($k, $pat) = split(/=/, shift(@w), 2);
            push @{ $rules{$k} }, [$pat, [@w]];
        } else {
            die "slurm.pl: $config: unknown line kind '$kind' (expected command, default or option)\n";
        }
    }
    close($cf);
} else {
    print STDERR "slurm.pl: warning: $config not found; submitting with plain sbatch options\n";
}

my %value = (%defaults, %given);
my @opts;
for my $name (sort keys %value) {
    my $v = $value{$name};
    my $matched = 0;
    for my $rule (@{ $rules{$name} || [] }) {
        my ($pat, $args) = @$rule;
        next unless $pat eq '*' || $pat eq $v;
        push @opts, map { (my $a = $_) =~ s/\$0/$v/g; $a } @$args;
        $matched = 1;
        last;
    }
    if (!$matched && exists $given{$name}) {
        die "slurm.pl: option --$name is not mapped in $config (add 'option $name=* ...')\n";
    }
}

# --- jobs -----------------------------------------------------------------------------
my ($var, $first, $last) = (undef, 1, 1);
if (@ARGV && $ARGV[0] =~ /^([A-Za-z_]\w*)=(\d+)(?::(\d+))?$/) {
    ($var, $first, $last) = ($1, $2, defined $3 ? $3 : $2);
    shift @ARGV;
    die "slurm.pl: empty job range $var=$first:$last\n" if $last < $first;
}
die "usage: slurm.pl [options] [JOB=1:N] LOGFILE COMMAND [ARGS...]\n" if @ARGV < 2;
my $logfile = shift @ARGV;

my $cmd;
if (@ARGV == 1) { $cmd = $ARGV[0]; }
else {
    my %ops = map { $_ => 1 } ('|', '||', '&&', ';', '>', '>>', '<', '2>', '2>&1', '&>', '|&');
    $cmd = join(' ', map { ($ops{$_} || /^[\w\/\.,:=+\-\@%^]+$/) ? $_ : sq($_) } @ARGV);
}

sub sq { my ($s) = @_; $s =~ s/'/'\\''/g; return "'$s'"; }
sub subst {
    my ($text, $job) = @_;
    return $text unless defined $var;
    $text =~ s/(?<![A-Za-z0-9])\Q$var\E(?![A-Za-z0-9])/$job/g;
    return $text;
}

my $logdir = dirname($logfile);
my $qdir = "$logdir/q";
make_path($qdir) unless -d $qdir;
(my $base = basename($logfile)) =~ s/\.log$//;
$base = subst($base, 'array') if defined $var;
$jobname = $base unless defined $jobname;
my $script = "$qdir/$base.sh";
my $cwd = getcwd();

open(my $sf, '>', $script) or die "slurm.pl: cannot write $script: $!\n";
print $sf "#!/usr/bin/env bash\n# written by slurm.pl\ncd " . sq($cwd) . "\n";
print $sf "[ -f ./path.sh ] && . ./path.sh\n";
print $sf "job=\${SLURM_ARRAY_TASK_ID:-$first}\n";
print $sf "case \"\$job\" in\n";
for my $job ($first .. $last) {
    print $sf "  $job)\n    log=" . sq(subst($logfile, $job)) . "\n    run_job() {\n" . subst($cmd, $job) . "\n    }\n    ;;\n";
}
print $sf "  *) echo \"slurm.pl: no job \$job in this array\" >&2; exit 1 ;;\nesac\n";
print $sf "mkdir -p \"\$(dirname \"\$log\")\"\n";
print $sf "{ echo \"# job \$job of $jobname on \$(hostname), Slurm job \${SLURM_JOB_ID:-?}\"; echo \"# Started at \$(date)\"; } > \"\$log\"\n";
print $sf "start=\$(date +%s)\nset -o pipefail\n( run_job ) >> \"\$log\" 2>&1\nrc=\$?\n";
print $sf "echo \"# Accounting: time=\$((\$(date +%s) - start))\" >> \"\$log\"\n";
print $sf "echo \"# Ended (code \$rc) at \$(date)\" >> \"\$log\"\nexit \$rc\n";
close($sf);
chmod 0755, $script;

my @sbatch = (@submit, '--wait', '--job-name', $jobname, '--output', (defined $var ? "$qdir/$base.%a.out" : "$qdir/$base.out"), @opts);
if (defined $var) {
    my $array = "$first-$last" . (defined $max_jobs ? "%$max_jobs" : '');
    push @sbatch, "--array=$array";
}
push @sbatch, $script;

if ($dry_run eq 'true') {
    print join(' ', map { /^[\w\/\.,:=+\-\@%^]+$/ ? $_ : sq($_) } @sbatch) . "\n";
    exit 0;
}

system(@sbatch);    # blocks (--wait); its own exit code is not trusted: read the logs
my @failed;
for my $job ($first .. $last) {
    my $log = subst($logfile, $job);
    my $ok = 0;
    if (open(my $lf, '<', $log)) {
        while (<$lf>) { $ok = 1 if /^# Ended \(code 0\)/; }
        close($lf);
    }
    push @failed, $log unless $ok;
}
if (@failed) {
    my $n = $last - $first + 1;
    print STDERR "slurm.pl: " . scalar(@failed) . " / $n failed, log is in @failed\n";
    exit 1;
}
exit 0;
