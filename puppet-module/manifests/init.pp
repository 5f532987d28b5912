# @summary Converges the host with hostguard: sysctl, cgroups, iptables, nftables and LXC from class parameters.
#
# Each section parameter is that section of the hostguard state document (SPEC section 3), as a
# hash; unset sections are not managed. Drift shows as one Hostguard_resource event per hostguard
# resource, and `puppet agent --noop` shows it without changing anything.
#
# @example
#   class { 'hostguard':
#     sysctl   => { 'values' => { 'net.ipv4.ip_forward' => 1 } },
#     iptables => { 'ipv4' => { 'filter' => { 'FORWARD' => { 'policy' => 'DROP' } } } },
#   }
#
# @param sysctl The `sysctl` section.
# @param cgroups The `cgroups` section.
# @param iptables The `iptables` section.
# @param nftables The `nftables` section: whole nft tables, each owned whole.
# @param lxc The `lxc` section.
# @param binary Path of the hostguard binary.
# @param download_url When set, the binary is downloaded from here (https) to `binary`, its
#   directory created when missing. `--noop` on a node without it shows what would be installed.
# @param download_sha256 The binary's SHA-256 (64 hex digits): any other binary is not installed.
# @param root Passed as `--root`: the prefix of every host path. Unset means /.
# @param extra_args Options for every hostguard command, e.g. ['--lock-timeout', '120'].
# @param apply_args Options of `hostguard apply` only, e.g. ['--backup-dir', '/var/backups/hostguard'].
# @param confirm_probe Guard firewall changes with nobody to type `hostguard confirm`: `true`
#   probes this agent's Puppet server (`server`, `serverport` 8140) after the change, a String
#   probes `HOST:PORT` or an `https://` URL (checked against the system's CAs and this agent's
#   Puppet CA, `localcacert`); no answer within `confirm` seconds rolls hostguard's own firewall
#   edits back and fails the resources. Unset: no probe.
# @param confirm Seconds the `confirm_probe` target has to answer.
# @param state_file Where the document is saved on real runs: `/etc/hostguard/state.json` under
#   `root` unless set, never the machine's /etc when `root` is set.
class hostguard (
  Optional[Hash] $sysctl = undef,
  Optional[Hash] $cgroups = undef,
  Optional[Hash] $iptables = undef,
  Optional[Hash] $nftables = undef,
  Optional[Hash] $lxc = undef,
  Pattern[/\A\//] $binary = '/usr/local/bin/hostguard',
  Optional[String[1]] $download_url = undef,
  Optional[Pattern[/\A[0-9a-fA-F]{64}\z/]] $download_sha256 = undef,
  Optional[String[1]] $root = undef,
  Array[String] $extra_args = [],
  Array[String] $apply_args = [],
  Optional[Pattern[/\A\//]] $state_file = undef,
  Optional[Variant[Boolean, String[1]]] $confirm_probe = undef,
  Integer[1] $confirm = 60,
) {
  if $download_url {
    unless $download_sha256 {
      fail('hostguard: download_url needs download_sha256, so an altered binary is never run')
    }
    # Puppet's file does not create parents: the binary's directory (/opt/hostguard/bin) is made
    # here unless the catalog already manages it.
    $bindir = $binary.regsubst(/\/[^\/]+\z/, '')
    if $bindir != '' and !defined(File[$bindir]) {
      exec { "hostguard: mkdir -p ${bindir}":
        command => ['mkdir', '-p', $bindir],
        path    => ['/usr/bin', '/bin'],
        creates => $bindir,
        before  => File[$binary],
      }
    }
    file { $binary:
      ensure         => file,
      source         => $download_url,
      checksum       => 'sha256',
      checksum_value => $download_sha256,
      mode           => '0755',
      before         => Hostguard_state['hostguard'],
    }
  }

  $document = { 'version' => 1 } + {
    'sysctl'   => $sysctl,
    'cgroups'  => $cgroups,
    'iptables' => $iptables,
    'nftables' => $nftables,
    'lxc'      => $lxc,
  }.filter |$section, $value| { $value != undef }

  hostguard_state { 'hostguard':
    document      => $document,
    binary        => $binary,
    root          => $root,
    extra_args    => $extra_args,
    apply_args    => $apply_args,
    state_file    => $state_file,
    confirm_probe => $confirm_probe,
    confirm       => $confirm,
  }
}
