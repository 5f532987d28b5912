# The hostguard state document for the default recipe: each section is that section of the
# document (SPEC section 3); sections left empty are not managed.
default['hostguard']['document']['sysctl'] = {}
default['hostguard']['document']['cgroups'] = {}
default['hostguard']['document']['iptables'] = {}
default['hostguard']['document']['nftables'] = {}
default['hostguard']['document']['lxc'] = {}

default['hostguard']['binary'] = '/usr/local/bin/hostguard'
# Set both to download the binary; a SHA-256 mismatch fails the run before anything runs.
default['hostguard']['download_url'] = nil
default['hostguard']['download_sha256'] = nil
default['hostguard']['root'] = nil
default['hostguard']['extra_args'] = []   # every command: %w(--lock-timeout 120)
default['hostguard']['apply_args'] = []   # apply only: %w(--backup-dir /var/backups/hostguard)
default['hostguard']['state_file'] = nil    # /etc/hostguard/state.json under root
# true: after a firewall change, probe chef_server_url's host:port; no answer within confirm
# seconds rolls the change back and fails the run. Or 'HOST:PORT' / 'https://...'.
default['hostguard']['confirm_probe'] = nil
default['hostguard']['confirm'] = 60
default['hostguard']['timeout'] = nil       # seconds per hostguard command (900)
