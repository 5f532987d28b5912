# The `hostguard_state` type: one state document, converged by the hostguard binary.
#
# Before it is evaluated, the resource runs `hostguard plan` and generates one `hostguard_resource`
# per resource that is not in sync, so Puppet reports (and `--noop` shows) one event per hostguard
# resource. The first of those to sync runs `hostguard apply` once for the whole document.

require_relative '../../puppet_x/hostguard/runner'

Puppet::Type.newtype(:hostguard_state) do
  @doc = <<-DOC
    Converges the host to a hostguard state document (sysctl, cgroups, iptables, lxc).

        hostguard_state { 'host':
          document => { 'sysctl' => { 'values' => { 'net.ipv4.ip_forward' => 1 } } },
          binary   => '/usr/local/bin/hostguard',
        }

    Drift appears as one `Hostguard_resource[ID]` event per hostguard resource; `--noop` shows it
    without changing anything. hostguard exit codes 1, 4 and 6 fail the resources concerned.
  DOC

  newparam(:name, namevar: true) do
    desc 'A name for this document.'
  end

  newparam(:document) do
    desc 'The state document as a hash (`version` defaults to 1). hostguard validates it.'
    validate do |value|
      raise ArgumentError, "document must be a hash, not #{value.class}" unless value.is_a?(Hash)
    end
    munge do |value|
      { 'version' => 1 }.merge(value.reject { |_k, v| v.nil? || v == :undef })
    end
  end

  newparam(:binary) do
    desc 'Path of the hostguard binary.'
    defaultto '/usr/local/bin/hostguard'
    validate do |value|
      raise ArgumentError, "binary must be an absolute path, not #{value.inspect}" unless value.to_s.start_with?('/')
    end
  end

  newparam(:root) do
    desc 'Passed as `--root DIR`: the prefix of every host path (tests, chroots). Unset means /.'
  end

  newparam(:extra_args, array_matching: :all) do
    desc 'Options for every hostguard command, e.g. `["--lock-timeout", "120"]`.'
    defaultto []
  end

  newparam(:apply_args, array_matching: :all) do
    desc 'Options of `hostguard apply` only, e.g. `["--backup-dir", "/var/backups/hostguard"]`.'
    defaultto []
  end

  newparam(:state_file) do
    desc 'Where a real run saves the document before applying it, so `hostguard plan` by hand sees the same. `--noop` never writes it.'
    defaultto '/etc/hostguard/state.json'
  end

  validate do
    raise ArgumentError, 'hostguard_state needs a document' unless self[:document]
  end

  autorequire(:file) do
    [self[:binary], File.dirname(self[:state_file].to_s)]
  end

  def runner
    @runner ||= PuppetX::Hostguard::Runner.new(binary: self[:binary], root: self[:root], extra_args: self[:extra_args])
  end

  def eval_generate
    @plan = runner.run('plan', self[:document])
    provider.remember(@plan)
    return [] unless @plan.ok?
    @plan.not_in_sync.map do |r|
      params = {
        name: r['id'], kind: r['kind'], current: r['current'], desired: r['desired'],
        value: r['desired'].nil? ? 'in sync' : r['desired'].to_s,
        diff: r['diff'], plan_message: r['message'], state: title,
      }.reject { |_k, v| v.nil? || v == [] }
      # Generated resources inherit no metaparameters: a schedule on hostguard_state must hold
      # for them too (noop is taken from this resource by hostguard_resource#noop?).
      [:schedule, :loglevel].each { |m| params[m] = self[m] unless self[m].nil? }
      child = Puppet::Type.type(:hostguard_resource).new(params)
      child.parent_state = self
      child
    end
  rescue StandardError => e
    # Puppet only logs an exception raised here, and the run would still exit 0: keep it for
    # retrieve, which fails this resource and so the run.
    @plan_error = e.message
    []
  end

  # A plan that failed fails this resource, so the run fails (exit 4 with --detailed-exitcodes).
  def retrieve
    raise Puppet::Error, @plan_error if @plan_error
    raise Puppet::Error, @plan.error_message if @plan && !@plan.ok?
    super
  end

  # `hostguard apply` of the whole document, once per run, whichever child syncs first.
  def apply_once
    @apply ||= begin
      result = runner.run('apply', self[:document], state_file: self[:state_file], command_args: self[:apply_args])
      provider.remember(result)
      result
    end
  end
end
