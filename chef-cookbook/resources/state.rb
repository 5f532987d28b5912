# hostguard_state: converges the host to a hostguard state document (SPEC section 3).
#
# A thin layer over libraries/hostguard.rb: load_current_value runs `hostguard plan`, the :apply
# action runs `hostguard apply` inside one converge_by listing every drifted hostguard resource,
# so why-run prints "Would set sysctl/net.ipv4.ip_forward from 0 to 1 ..." and changes nothing.
# On exit 4 or 6 the resource is still updated with one line per change that worked, and the
# failure is raised after them; a plan that already reports a failure fails why-run the same way.

unified_mode true
provides :hostguard_state

description 'Converges sysctl, cgroups, iptables and LXC to a hostguard state document.'

property :document, Hash, required: %i(apply plan),
         description: 'The state document (version defaults to 1); hostguard validates it. Optional for :audit.'
property :binary, String, default: '/usr/local/bin/hostguard',
         description: 'Path of the hostguard binary.'
property :root, String,
         description: 'Passed as --root: the prefix of every host path. Unset means /.'
property :extra_args, Array, default: [],
         description: 'Options for every hostguard command, e.g. %w(--lock-timeout 120).'
property :apply_args, Array, default: [],
         description: 'Options of hostguard apply only, e.g. %w(--backup-dir /var/backups/hostguard).'
property :confirm_probe, [true, false, String],
         description: 'Guard firewall changes with nobody to type hostguard confirm: true probes the host and port of chef_server_url (a TCP connect) after the change, a String probes HOST:PORT or an https:// URL (its certificate checked against the system\'s CAs and what Chef trusts: ssl_ca_file and trusted_certs_dir); no answer within confirm seconds rolls hostguard\'s own firewall edits back and fails the run.'
property :confirm, Integer, default: 60, callbacks: { 'must be a positive number of seconds' => ->(v) { v.positive? } },
         description: 'Seconds the confirm_probe target has to answer.'
property :state_file, String, default: lazy { |r| Hostguard.default_state_file(r.root) },
         description: 'Where a real run saves the document before applying it (/etc/hostguard/state.json under root); why-run never writes it.'
property :timeout, Integer, default: Hostguard::DEFAULT_TIMEOUT,
         description: 'Seconds each hostguard command may take before the run fails (a hung iptables must not hang Chef).'
property :audit_fail_on, String, equal_to: %w(low medium high),
         description: 'For the :audit action: fail the run on a finding at or above this severity.'

# What `hostguard plan` reports as not in sync, one description per resource, and what it
# already knows would fail. Read, never set.
property :drift, Array, default: [], desired_state: false
property :plan_error, String, desired_state: false

load_current_value do |new_resource|
  # :audit needs no document, and no plan.
  current_value_does_not_exist! if new_resource.document.nil?
  runner = Hostguard::Runner.new(binary: new_resource.binary, root: new_resource.root,
                                 extra_args: new_resource.extra_args, timeout: new_resource.timeout, logger: Chef::Log)
  # In why-run the binary may be one a remote_file earlier in the run would have installed.
  current_value_does_not_exist! if Chef::Config[:why_run] && !::File.executable?(new_resource.binary)
  result = runner.plan(Hostguard.document(new_resource.document))
  raise Hostguard::Error, result.error_message unless result.reported?
  drift result.descriptions
  plan_error result.error_message unless result.ok?
end

action :apply do
  description 'Converge the host with hostguard apply (default).'
  # No `return` in an action block: Chef runs it as a block, not a method.
  pending = current_resource ? current_resource.drift : ["apply the hostguard document once #{new_resource.binary} is installed"]
  plan_error = current_resource && current_resource.plan_error
  if Chef::Config[:why_run]
    converge_by(pending) {} unless pending.empty?
    # A change hostguard already knows would fail fails why-run too, after what would change.
    raise Hostguard::Error, plan_error if plan_error
  elsif !pending.empty? || plan_error
    args = new_resource.apply_args +
           Hostguard.confirm_args(new_resource.confirm_probe, new_resource.confirm, Chef::Config[:chef_server_url],
                                  ca_file: chef_ca_file, given: new_resource.apply_args + new_resource.extra_args)
    result = runner.apply(document, state_file: new_resource.state_file, args: args)
    raise Hostguard::Error, result.error_message unless result.reported?
    # What did change is logged and counts the resource as updated, even on exit 6.
    changed = result.descriptions
    converge_by(changed) {} unless changed.empty?
    raise Hostguard::Error, result.error_message unless result.ok?
  end
end

action :plan do
  description 'Report drift as warnings and change nothing.'
  (current_resource ? current_resource.drift : []).each { |d| logger.warn("hostguard drift: #{d}") }
  logger.warn("hostguard would fail: #{current_resource.plan_error}") if current_resource && current_resource.plan_error
end

action :audit do
  description 'Run hostguard audit; log findings, and fail on audit_fail_on or above.'
  # With a document, hostguard also says whether applying it closes each finding.
  doc = new_resource.document
  result = runner.audit(doc.nil? || doc.empty? ? nil : document, fail_on: new_resource.audit_fail_on || 'high')
  raise Hostguard::Error, "hostguard audit exited #{result.exitstatus}: #{result.stderr.strip}" if result.exitstatus == 1
  (result.report ? result.report['findings'] || [] : []).each do |f|
    logger.warn("hostguard audit: [#{f['severity']}] #{f['id']} #{f['subject']}: #{f['title']}")
  end
  raise Hostguard::Error, "hostguard audit found issues at or above #{new_resource.audit_fail_on}" if new_resource.audit_fail_on && result.exitstatus == 2
end

action_class do
  def runner
    Hostguard::Runner.new(binary: new_resource.binary, root: new_resource.root, extra_args: new_resource.extra_args,
                          timeout: new_resource.timeout, logger: Chef::Log)
  end

  def document
    Hostguard.document(new_resource.document)
  end

  # Chef's own trust (ssl_ca_file, trusted_certs_dir) for an https:// confirm_probe, joined in
  # the file cache when it is more than one file.
  def chef_ca_file
    Hostguard.ca_bundle(Chef::Config[:ssl_ca_file], Chef::Config[:trusted_certs_dir],
                        ::File.join(Chef::Config[:file_cache_path], 'hostguard-ca.pem'))
  end
end
