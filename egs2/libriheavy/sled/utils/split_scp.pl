#!/usr/bin/env perl
# Split a key-first text file (scp, text, key list) into N parts of nearly equal line count.
#
#   split_scp.pl [--utt2spk=FILE] IN OUT.1 OUT.2 ... OUT.N
#
# Parts are contiguous runs of IN, so sorted input gives sorted parts. With --utt2spk, all
# lines of one speaker land in the same part (parts are then balanced by speakers' lines).
# Fails if there are fewer lines (or speakers) than parts: an empty part would make a job
# with nothing to do.
use strict;
use warnings;

my $utt2spk_file;
while (@ARGV && $ARGV[0] =~ /^--/) {
    my $opt = shift @ARGV;
    if ($opt =~ /^--utt2spk=(.+)$/) { $utt2spk_file = $1; }
    elsif ($opt eq '--utt2spk') { $utt2spk_file = shift @ARGV; }
    else { die "split_scp.pl: unknown option $opt\n"; }
}
die "usage: split_scp.pl [--utt2spk=FILE] IN OUT.1 [OUT.2 ...]\n" if @ARGV < 2;
my ($in, @outs) = @ARGV;
my $n = scalar @outs;

open(my $ifh, '<', $in) or die "split_scp.pl: cannot read '$in': $!\n";
my @lines = <$ifh>;
close($ifh);

# Group lines into units that must not be separated.
my @units;
if (defined $utt2spk_file) {
    my %spk;
    open(my $sfh, '<', $utt2spk_file) or die "split_scp.pl: cannot read '$utt2spk_file': $!\n";
    while (<$sfh>) { my @f = split; $spk{$f[0]} = $f[1] if @f >= 2; }
    close($sfh);
    my $prev;
    for my $i (0 .. $#lines) {
        my ($key) = split(' ', $lines[$i]);
        die "split_scp.pl: line " . ($i + 1) . " of '$in' is empty\n" unless defined $key;
        my $s = $spk{$key};
        die "split_scp.pl: key '$key' (line " . ($i + 1) . " of '$in') is not in '$utt2spk_file'\n" unless defined $s;
        if (!defined $prev || $s ne $prev) { push @units, []; }
        push @{ $units[-1] }, $lines[$i];
        $prev = $s;
    }
} else {
    @units = map { [$_] } @lines;
}

my $nunits = scalar @units;
if ($nunits < $n) {
    my $what = defined $utt2spk_file ? 'speakers' : 'lines';
    die "split_scp.pl: cannot split $nunits $what of '$in' into $n non-empty parts; use at most $nunits jobs\n";
}

# Cut the units where the cumulative line count crosses k/n of the total.
my $total = scalar @lines;
my $u = 0;
my $done = 0;
for my $k (1 .. $n) {
    my $target = int(($total * $k) / $n + 0.5);
    my @part;
    # take at least one unit, and leave at least one for each remaining part
    while ($u < $nunits && ($u < $nunits - ($n - $k)) && (!@part || $done < $target)) {
        push @part, @{ $units[$u] };
        $done += scalar @{ $units[$u] };
        $u++;
    }
    if ($k == $n) { while ($u < $nunits) { push @part, @{ $units[$u] }; $u++; } }
    open(my $ofh, '>', $outs[$k - 1]) or die "split_scp.pl: cannot write '$outs[$k - 1]': $!\n";
    print $ofh @part;
    close($ofh);
}
exit 0;
