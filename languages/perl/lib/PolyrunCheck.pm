# polyrun check for Perl: `perl -c -I/lang/lib -MPolyrunCheck main.pl`, i.e. perl's own compile
# phase with this module loaded first. Prints the check protocol (docs/languages.md) on stdout.
#
# Trade-off: Perl cannot be parsed without running its compile-time code (a `use` imports subs
# and prototypes that change how the rest parses), and no standalone Perl parser (PPI) is in
# Debian's perl. So BEGIN/UNITCHECK/CHECK blocks and the modules the file `use`s do run, as
# with `perl -c`. That is contained: the check runs in the same sandbox, with the same limits,
# as a run would. The program itself (its main code, INIT and END blocks) never runs.
package PolyrunCheck;

use strict;
use warnings;

my $dir = __FILE__ =~ s{/[^/]*\z}{}r;
@INC = grep { !(defined $_ && $_ eq $dir) } @INC;

my $entry = $0;
my $cwd = readlink('/proc/self/cwd') // '';
my (@imports, %seen, $reported);

sub shown {
  my ($file) = @_;
  $file =~ s{\A\Q$cwd\E/}{} if length $cwd;
  $file =~ s{\A\./}{};
  return $file;
}

sub field { my ($s) = @_; $s =~ tr/\t\n\r/   /; return $s }

# The leading newline ends any partial line a BEGIN block printed before.
my $started;
sub record { print STDOUT ($started++ ? '' : "\n"), join("\t", map { field($_) } @_), "\n" }

sub is_path { return $_[0] =~ m{\A(?:/|\.\.?/)} }

# "Foo/Bar.pm" (what `use Foo::Bar` and `require Foo::Bar` ask for) is shown as Foo::Bar.
sub module_name {
  my ($file) = @_;
  return $file if is_path($file);
  return $file =~ m{\A(\w+(?:/\w+)*)\.pm\z} ? $1 =~ s{/}{::}gr : $file;
}

# Where perl's require would find it, without loading it.
sub resolvable {
  my ($file) = @_;
  return 1 if exists $INC{$file};
  return -f $file ? 1 : 0 if is_path($file);
  for my $d (@INC) {
    next if ref $d;
    return 1 if -f "$d/$file";
  }
  return 0;
}

# One of the user's own files, found once the program sets up its library path at run time.
sub users_file {
  my ($file) = @_;
  my $base = $entry =~ m{/} ? $entry =~ s{/[^/]*\z}{}r : '.';
  return -f "$base/$file" || -f $file || -f "$base/lib/$file" || -f "lib/$file";
}

sub add_import {
  my ($file, $line, $available) = @_;
  my $name = module_name($file);
  push @imports, [$name, $line, $available ? 1 : 0] unless $seen{"$name\0$line"}++;
}

# Every require, `use` and `no` of the entry file passes through here while it compiles. A module
# that cannot be found is recorded and stubbed, so compilation goes on to find the next import or
# syntax error (the stub exports nothing: code using its subs as barewords may then fail to parse).
*CORE::GLOBAL::require = sub {
  my ($file) = @_;
  my (undef, $from, $line) = caller;
  return CORE::require($file) if $from ne $entry || $file =~ /\Av?\d/;
  my $found = resolvable($file);
  add_import($file, $line, $found || users_file($file));
  return CORE::require($file) if $found;
  $INC{$file} = "(not loaded by polyrun check)";
  return 1;
};

# Requires that run later (top-level or in subs): read off the compiled op tree.
sub runtime_requires {
  require B;
  my %done;
  my $padval = sub {
    my ($cv, $targ) = @_;
    return (($cv->PADLIST->ARRAY)[1]->ARRAY)[$targ];
  };
  my $const = sub {
    my ($op, $cv) = @_;
    return undef unless $op->name eq 'const';
    my $sv = $op->sv;
    $sv = $padval->($cv, $op->targ) unless $$sv;
    return $sv->can('PV') && ($sv->FLAGS & B::SVf_POK()) ? $sv->PV : undef;
  };
  my $line = 0;
  my $walk;
  my $walk_cv = sub {
    my ($cv) = @_;
    return if $done{$$cv}++ || !$cv->can('ROOT') || !${$cv->ROOT};
    return if $cv->FILE ne $entry;
    $walk->($cv->ROOT, $cv);
  };
  $walk = sub {
    my ($op, $cv) = @_;
    my $name = $op->name;
    $line = $op->line if $name eq 'nextstate' || $name eq 'dbstate';
    if ($name eq 'require' && $op->flags & B::OPf_KIDS()) {
      my $file = $const->($op->first, $cv);
      add_import($file, $line, resolvable($file) || users_file($file)) if defined $file;
    } elsif ($name eq 'entersub') {
      # require Foo  =>  entersub(pushmark, const "Foo.pm", gv *CORE::GLOBAL::require)
      my @kids;
      for (my $k = $op->first->first; $$k; $k = $k->sibling) { push @kids, $k }
      my $cvop = $kids[-1];
      $cvop = $cvop->first if $cvop && $cvop->name eq 'null' && $cvop->flags & B::OPf_KIDS();
      if (@kids == 3 && $cvop->name eq 'gv') {
        my $gv = ref($cvop) eq 'B::PADOP' ? $padval->($cv, $cvop->padix) : $cvop->gv;
        my $file = $const->($kids[1], $cv);
        if ($gv->NAME eq 'require' && $gv->STASH->NAME eq 'CORE::GLOBAL' && defined $file) {
          add_import($file, $line, resolvable($file) || users_file($file));
        }
      }
    } elsif ($name eq 'anoncode' || $name eq 'anonconst') {
      my $sv = $op->sv;
      $sv = $padval->($cv, $op->targ) unless $$sv;
      $walk_cv->($sv) if ref($sv) eq 'B::CV';
    }
    if ($op->flags & B::OPf_KIDS()) {
      for (my $k = $op->first; $$k; $k = $k->sibling) { $walk->($k, $cv) }
    }
  };
  $walk->(B::main_root(), B::main_cv()) if ${B::main_root()};
  # Named subs, in any package.
  my %stashes;
  my $subs;
  $subs = sub {
    my ($pkg) = @_;
    no strict 'refs';
    return if $stashes{$pkg}++;
    for my $name (keys %{$pkg}) {
      if ($name =~ /::\z/) {
        $subs->($pkg eq 'main::' ? $name : "$pkg$name");
        next;
      }
      my $entry_sv = ${$pkg}{$name};
      my $code = ref($entry_sv) eq 'CODE' ? $entry_sv
        : ref(\$entry_sv) eq 'GLOB' ? *{$entry_sv}{CODE} : undef;
      $walk_cv->(B::svref_2object($code)) if $code;
    }
  };
  $subs->('main::');
}

sub report {
  return if $reported++;
  for my $i (sort { $a->[1] <=> $b->[1] || $a->[0] cmp $b->[0] } @imports) {
    record('import', @$i);
  }
}

# Compilation failed: perl hands over every error at once ("syntax error at main.pl line 2,
# near …", one per line), then gives up.
$SIG{__DIE__} = sub {
  return if $^S || ref $_[0] || $reported;
  for my $l (split /\n/, join '', @_) {
    # Consequences of an earlier error, not errors of their own.
    next if $l =~ /\A(?:BEGIN failed--|BEGIN not safe after errors--|Compilation failed in require)/;
    next unless $l =~ /\A(.+?) at (\S+) line (\d+)(?:, (near .*)|\.)?\z/;
    my ($msg, $file, $line, $near) = ($1, shown($2), $3, $4);
    next if $file =~ m{\A/};    # not one of the user's files
    record('syntax_error', $file, $line, 0, defined $near ? "$msg, $near" : $msg);
  }
  report();
};

CHECK {
  eval { runtime_requires(); 1 } or print STDERR "polyrun check: $@";
  report();
}

1;
