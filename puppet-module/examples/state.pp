# The type with whole documents: one from a JSON file in a module (no stdlib needed), one as a
# hash. Both may name the same hostguard resource; `require` orders them.
hostguard_state { 'base':
  document   => file('profile/hostguard.json'),
  apply_args => ['--backup-dir', '/var/backups/hostguard'],
}

hostguard_state { 'containers':
  document => {
    'lxc' => { 'containers' => { 'web1' => { 'config' => { 'lxc.start.auto' => '1' } } } },
  },
  require  => Hostguard_state['base'],
}
