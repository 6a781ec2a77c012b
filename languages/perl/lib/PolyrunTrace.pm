# Loaded before the user's program (perl -I/lang/lib -MPolyrunTrace): gives an uncaught die the
# Carp::confess-style frames that Carp::Always would (that module is not in Debian's perl).
# The program sees the handler in $SIG{__DIE__} and may replace it, like any inherited one.
package PolyrunTrace;

# Leave @INC exactly as plain perl has it.
my $dir = __FILE__ =~ s{/[^/]*\z}{}r;
@INC = grep { !(defined $_ && $_ eq $dir) } @INC;

$SIG{__DIE__} = sub {
  # Untouched: dies inside eval (the program may inspect $@), compile-time errors (undefined $^S:
  # perl lists them itself) and exception objects.
  return if $^S || !defined $^S || ref $_[0];
  # die's exit status comes from $! and $?; loading Carp must not change them.
  my ($errno, $status) = ($! + 0, $?);
  require Carp;
  local $Carp::CarpInternal{PolyrunTrace} = 1;
  my $trace = Carp::longmess('');
  $trace =~ s/\A[^\n]*\n//;    # Carp's own " at FILE line N." repeats the message's
  my $msg = join '', @_;
  $msg .= "\n" unless $msg =~ /\n\z/;
  ($!, $?) = ($errno, $status);
  die $msg . $trace;
};

1;
