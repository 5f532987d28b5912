# The class with sections as parameters, the binary downloaded into a directory Puppet makes.
# puppet apply --noop examples/init.pp
class { 'hostguard':
  binary          => '/opt/hostguard/bin/hostguard',
  download_url    => 'https://files.example.com/hostguard/0.1.0/hostguard',
  download_sha256 => '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
  sysctl          => {
    'persist' => '/etc/sysctl.d/60-hostguard.conf',
    'values'  => { 'net.ipv4.ip_forward' => 1, 'vm.swappiness' => 10 },
  },
  iptables        => {
    'ipv4' => { 'filter' => { 'FORWARD' => {
      'policy' => 'DROP', 'purge' => true, 'ignore' => ['-j DOCKER'],
      'rules'  => ['-i docker0 -o eth0 -j ACCEPT'],
    } } },
  },
}
