# hostguard_state: converges the host to a hostguard state document (SPEC section 3).
#
# A thin layer over libraries/hostguard.rb: load_current_value runs `hostguard plan`, the :apply
# action runs `hostguard apply` inside one converge_by listing every drifted hostguard resource,
# so why-run prints "Would set sysctl/net.ipv4.ip_forward from 0 to 1 ..." and changes nothing.

unified_mode true
provides :hostguard_state

description 'Converges sysctl, cgroups, iptables and LXC to a hostguard state document.'

property :document, Hash, required: true,
         description: 'The state document (version defaults to 1); hostguard validates it.'
property :binary, String, default: '/usr/local/bin/hostguard',
         description: 'Path of the hostguard binary.'
property :root, String,
         description: 'Passed as --root: the prefix of every host path. Unset means /.'
property :extra_args, Array, default: [],
         description: 'Options for every hostguard command, e.g. %w(--lock-timeout 120).'
property :apply_args, Array, default: [],
         description: 'Options of hostguard apply only, e.g. %w(--backup-dir /var/backups/hostguard).'
property :state_file, String, default: '/etc/hostguard/state.json',
         description: 'Where a real run saves the document before applying it; why-run never writes it.'
property :audit_fail_on, String, equal_to: %w(low medium high),
         description: 'For the :audit action: fail the run on a finding at or above this severity.'

# What `hostguard plan` reports as not in sync, one description per resource. Read, never set.
property :drift, Array, default: [], desired_state: false

load_current_value do |new_resource|
  runner = Hostguard::Runner.new(binary: new_resource.binary, root: new_resource.root,
                                 extra_args: new_resource.extra_args)
  # In why-run the binary may be one a remote_file earlier in the run would have installed.
  current_value_does_not_exist! if Chef::Config[:why_run] && !::File.executable?(new_resource.binary)
  result = runner.plan(Hostguard.document(new_resource.document))
  raise Hostguard::Error, result.error_message unless result.ok?
  drift result.descriptions
end

action :apply do
  description 'Converge the host with hostguard apply (default).'
  pending = current_resource ? current_resource.drift : ["apply the hostguard document once #{new_resource.binary} is installed"]
  unless pending.empty?
    converge_by(pending) do
      result = runner.apply(document, state_file: new_resource.state_file, args: new_resource.apply_args)
      raise Hostguard::Error, result.error_message unless result.ok?
    end
  end
end

action :plan do
  description 'Report drift as warnings and change nothing.'
  (current_resource ? current_resource.drift : []).each { |d| logger.warn("hostguard drift: #{d}") }
end

action :audit do
  description 'Run hostguard audit; log findings, and fail on audit_fail_on or above.'
  # With a document, hostguard also says whether applying it closes each finding.
  result = runner.audit(new_resource.document.empty? ? nil : document, fail_on: new_resource.audit_fail_on || 'high')
  raise Hostguard::Error, "hostguard audit exited #{result.exitstatus}: #{result.stderr.strip}" if result.exitstatus == 1
  (result.report ? result.report['findings'] || [] : []).each do |f|
    logger.warn("hostguard audit: [#{f['severity']}] #{f['id']} #{f['subject']}: #{f['title']}")
  end
  raise Hostguard::Error, "hostguard audit found issues at or above #{new_resource.audit_fail_on}" if new_resource.audit_fail_on && result.exitstatus == 2
end

action_class do
  def runner
    Hostguard::Runner.new(binary: new_resource.binary, root: new_resource.root, extra_args: new_resource.extra_args)
  end

  def document
    Hostguard.document(new_resource.document)
  end
end
