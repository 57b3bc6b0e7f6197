#!/usr/bin/env perl
# Keep (or, with --exclude, drop) the lines of IN whose key appears in ID_LIST.
#
#   filter_scp.pl [--exclude] [-f N] ID_LIST [IN ...] > OUT
#
# Keys of ID_LIST are its first fields; the key of an IN line is its N-th field
# (default 1; -f -1 means the last field). IN defaults to stdin. Line order of IN is kept.
use strict;
use warnings;

my $exclude = 0;
my $field = 1;
while (@ARGV && $ARGV[0] =~ /^-/) {
    my $opt = shift @ARGV;
    if ($opt eq '--exclude') { $exclude = 1; }
    elsif ($opt eq '-f') { $field = shift @ARGV; }
    elsif ($opt =~ /^-f(-?\d+)$/) { $field = $1; }
    else { die "filter_scp.pl: unknown option $opt\n"; }
}
die "filter_scp.pl: -f needs a non-zero integer, got '$field'\n" unless defined $field && $field =~ /^-?\d+$/ && $field != 0;
die "usage: filter_scp.pl [--exclude] [-f N] ID_LIST [IN ...]\n" unless @ARGV >= 1;
my $idlist = shift @ARGV;

my %keep;
open(my $fh, '<', $idlist) or die "filter_scp.pl: cannot read '$idlist': $!\n";
while (<$fh>) { my ($k) = split; $keep{$k} = 1 if defined $k; }
close($fh);

while (<>) {
    my @f = split;
    next unless @f;
    my $k = $field > 0 ? $f[$field - 1] : $f[$field];
    next unless defined $k;
    my $in = exists $keep{$k};
    print if ($in xor $exclude);
}
