# The `hostguard_state` type: one state document, converged by the hostguard binary.
#
# Before it is evaluated, the resource runs `hostguard plan` and generates one `hostguard_resource`
# per resource that is not in sync, so Puppet reports (and `--noop` shows) one event per hostguard
# resource; one the plan already reports `failed` fails, in `--noop` too. The first of those to
# sync runs `hostguard apply` once for the whole document. Generated titles are scoped to this
# resource's title, so two documents may name the same hostguard resource.

require_relative '../../puppet_x/hostguard/runner'

Puppet::Type.newtype(:hostguard_state) do
  @doc = <<-DOC
    @summary Converges the host to a hostguard state document (sysctl, cgroups, iptables, lxc).

    Drift appears as one `Hostguard_resource[TITLE:ID]` event per hostguard resource; `--noop`
    shows it without changing anything. hostguard exit codes 1, 4 and 6 fail the resources
    concerned; a resource the plan already reports `failed` fails in `--noop` too.

    @example A document as a hash
      hostguard_state { 'host':
        document => { 'sysctl' => { 'values' => { 'net.ipv4.ip_forward' => 1 } } },
        binary   => '/usr/local/bin/hostguard',
      }

    @example A document kept as JSON in a module (no parsejson needed)
      hostguard_state { 'host':
        document => file('profile/hostguard.json'),
      }
  DOC

  newparam(:name, namevar: true) do
    desc 'A name for this document.'
  end

  newparam(:document) do
    desc 'The state document as a hash, or as the JSON text of one (`file(...)`); `version` defaults to 1. hostguard validates the rest.'
    validate do |value|
      PuppetX::Hostguard.document(value)
    rescue PuppetX::Hostguard::Error => e
      raise ArgumentError, e.message
    end
    munge { |value| PuppetX::Hostguard.document(value) }
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

  newparam(:confirm_probe) do
    desc <<-DESC
      Guard firewall changes as `hostguard confirm` would, with nobody to type it: after the
      change hostguard probes a target and keeps the change when it answers, or rolls its own
      firewall edits back (the resources fail) when nothing answers within `confirm` seconds.
      `true`: this agent's Puppet server (`server_list`'s first entry, else `server`, on
      `serverport`, 8140), the connection a firewall change could cut. A String: `HOST:PORT` or an
      `https://` URL answered with 2xx, its certificate checked against the system's CAs and
      this agent's Puppet CA (`localcacert`, so the Puppet server's own
      `https://SERVER:8140/status/v1/simple` works); a `--ca-file` in `extra_args` or
      `apply_args` is used instead. Unset or `false`: no probe.
    DESC
    validate do |value|
      next if [true, false, 'true', 'false', 'server'].include?(value)
      raise ArgumentError, "confirm_probe must be true, false, 'HOST:PORT' or an https:// URL, not #{value.inspect}" unless value.is_a?(String) && !value.empty?
    end
  end

  newparam(:confirm) do
    desc 'Seconds `confirm_probe` has to answer after the change.'
    defaultto 60
    validate do |value|
      raise ArgumentError, "confirm must be a positive number of seconds, not #{value.inspect}" unless value.to_s =~ /\A[1-9][0-9]*\z/
    end
    munge { |value| Integer(value.to_s) }
  end

  newparam(:state_file) do
    desc 'Where a real run saves the document before applying it, so `hostguard plan` by hand sees the same: `/etc/hostguard/state.json` under `root` unless set. `--noop` never writes it.'
    defaultto { PuppetX::Hostguard.default_state_file(@resource[:root]) }
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
    install = pending_install
    return [child(install)] if install
    @plan = runner.run('plan', self[:document])
    provider.remember(@plan)
    return [] unless @plan.reported?
    @plan.not_in_sync.map { |r| child(r) }
  rescue StandardError => e
    # Puppet only logs an exception raised here, and the run would still exit 0: keep it for
    # retrieve, which fails this resource and so the run.
    @plan_error = e.message
    []
  end

  # A plan that could not run fails this resource, so the run fails (exit 4 with
  # --detailed-exitcodes); resources the plan reports failed fail their own events instead.
  def retrieve
    raise Puppet::Error, @plan_error if @plan_error
    raise Puppet::Error, @plan.error_message if @plan && !@plan.reported?
    super
  end

  # In --noop on a node where a `file` in the catalog would first install the binary (the class's
  # download_url), the plan cannot run yet: one noop event says what would be installed, as
  # Chef's why-run does, instead of failing on the missing binary.
  def pending_install
    return nil unless noop? && !File.executable?(self[:binary].to_s)
    file = catalog && catalog.resource(:file, self[:binary])
    source = file && Array(file[:source]).first
    return nil unless source
    sha = file[:checksum_value]
    { 'id' => 'install', 'kind' => 'install', 'current' => nil, 'status' => 'drift',
      'desired' => "hostguard from #{source}#{sha ? " (sha256 #{sha})" : ''} at #{self[:binary]}, then apply",
      'message' => 'would install the binary, then apply the document' }
  end

  # One generated hostguard_resource for a report entry, titled "THIS_TITLE:ID".
  def child(r)
    params = {
      name: "#{title}:#{r['id']}", id: r['id'], kind: r['kind'], status: r['status'],
      current: r['current'], desired: r['desired'],
      value: r['desired'].nil? ? 'in sync' : r['desired'].to_s,
      diff: r['diff'], plan_message: r['message'], state: title,
    }.reject { |_k, v| v.nil? || v == [] }
    # Generated resources inherit no metaparameters: a schedule on hostguard_state must hold
    # for them too (noop is taken from this resource by hostguard_resource#noop?).
    [:schedule, :loglevel].each { |m| params[m] = self[m] unless self[m].nil? }
    resource = Puppet::Type.type(:hostguard_resource).new(params)
    resource.parent_state = self
    resource
  end

  # `hostguard apply` of the whole document, once per run, whichever child syncs first.
  def apply_once
    @apply ||= begin
      given = Array(self[:apply_args]) + Array(self[:extra_args])
      args = Array(self[:apply_args]) + PuppetX::Hostguard.confirm_args(self[:confirm_probe], self[:confirm], given)
      result = runner.run('apply', self[:document], state_file: self[:state_file], command_args: args)
      provider.remember(result)
      result
    end
  end
end
