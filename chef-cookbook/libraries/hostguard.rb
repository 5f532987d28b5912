# The cookbook's logic, in plain Ruby so it is tested without a Chef client: build the state
# document from node attributes, run the hostguard binary as an argument vector, and turn its JSON
# report into the descriptions Chef prints for updated resources and in why-run.
#
# No value is compared here: hostguard decides what drifts; exit codes decide success
# (0 in sync, 2 drift/changed, 4 failed, 6 changed and failed, 1 unreadable document or host).
#
# The binary runs through Chef's own shell_out! (Chef::Mixin::ShellOut, so Chef's debug log shows
# the command) with a timeout; outside a Chef run (this library's tests) through Mixlib::ShellOut,
# which Chef's helper wraps, with the same options and the same timeout error.

require 'json'
begin
  require 'chef/mixin/shell_out'
rescue LoadError
  require 'mixlib/shellout'
end

module Hostguard
  class Error < StandardError; end

  SECTIONS = %w(sysctl cgroups iptables nftables lxc).freeze
  SHA256 = /\A[0-9a-fA-F]{64}\z/.freeze
  # Every exit code hostguard gives; the Result says which of them fail the run.
  EXIT_CODES = [0, 1, 2, 4, 6].freeze
  DEFAULT_TIMEOUT = 900

  # /etc/hostguard/state.json under the root, so a lab run with a root never writes the
  # machine's own /etc.
  def self.default_state_file(root)
    File.join(root.to_s.empty? ? '/' : root.to_s, 'etc/hostguard/state.json')
  end

  # Refuses a download checksum that cannot be a SHA-256, before anything is downloaded.
  def self.check_sha256!(value)
    raise Error, "hostguard: download_sha256 must be 64 hexadecimal digits, not #{value.inspect}" unless value.to_s.match?(SHA256)
    value
  end

  # The state document from attributes (a Hash or a Chef attribute Mash): string keys, sections
  # left unset or empty are not managed, `version` defaults to 1. hostguard validates the rest.
  def self.document(attrs)
    doc = plain(attrs.nil? ? {} : attrs)
    raise Error, "hostguard: the document must be a hash, not #{doc.class}" unless doc.is_a?(Hash)
    doc = doc.reject { |k, v| SECTIONS.include?(k) && (v.nil? || v == {}) }
    { 'version' => 1 }.merge(doc)
  end

  # Deep copy into plain Hash/Array/String keys (Chef's ImmutableMash and symbols included).
  def self.plain(value)
    case value
    when Hash then value.each_with_object({}) { |(k, v), h| h[k.to_s] = plain(v) }
    when Array then value.map { |v| plain(v) }
    else
      value.respond_to?(:to_hash) ? plain(value.to_hash) : value
    end
  end

  # The `--confirm-probe` target of `confirm_probe true`: the host and port of this node's Chef
  # server (`chef_server_url`), the connection a firewall change could cut. A TCP connect, not a
  # GET: the server answers an unsigned request with 401, which is not the 2xx an https:// probe
  # needs.
  def self.server_target(chef_server_url)
    require 'uri'
    uri = URI.parse(chef_server_url.to_s)
    raise Error, "hostguard: confirm_probe true needs a chef_server_url with a host, not #{chef_server_url.inspect}" unless uri.host
    host = uri.host.include?(':') && !uri.host.start_with?('[') ? "[#{uri.host}]" : uri.host
    "#{host}:#{uri.port}"
  rescue URI::InvalidURIError => e
    raise Error, "hostguard: chef_server_url #{chef_server_url.inspect}: #{e.message}"
  end

  # The apply options of an unattended `--confirm SECONDS --confirm-probe TARGET`: `probe` true
  # means the Chef server of `chef_server_url`, a String is the target as hostguard takes it
  # (HOST:PORT or https://...), nil or false no probe. An https:// target is also checked against
  # `ca_file` (Chef's own trust, `ca_bundle`) unless `given`, the options already on the command
  # line, name a `--ca-file` of their own (hostguard takes it once).
  def self.confirm_args(probe, seconds, chef_server_url = nil, ca_file: nil, given: [])
    return [] if probe.nil? || probe == false || probe.to_s.empty?
    target = probe == true ? server_target(chef_server_url) : probe.to_s
    args = ['--confirm', Integer(seconds).to_s, '--confirm-probe', target]
    use_ca = ca_file && target.start_with?('https://') && !Array(given).map(&:to_s).include?('--ca-file')
    use_ca ? args + ['--ca-file', ca_file] : args
  end

  # What this node's Chef trusts beyond the system's CAs, as the one PEM file hostguard's
  # `--ca-file` takes: `ssl_ca_file` and every certificate in `trusted_certs_dir` (where
  # `knife ssl fetch` puts a Chef server's), so an https:// probe of a server Chef itself trusts
  # is trusted too. One file is used as it is; several are joined into `bundle`, rewritten (by a
  # rename) only when their content changed. nil when Chef trusts nothing of its own.
  def self.ca_bundle(ssl_ca_file, trusted_certs_dir, bundle)
    files = [ssl_ca_file].compact.map(&:to_s).select { |f| File.file?(f) }
    files += Dir.glob(File.join(trusted_certs_dir.to_s, '*.{crt,pem}')).sort if trusted_certs_dir
    return nil if files.empty?
    return files.first if files.size == 1
    pem = files.map { |f| File.read(f).strip + "\n" }.join
    unless File.exist?(bundle) && File.read(bundle) == pem
      tmp = "#{bundle}.hostguard-tmp.#{Process.pid}"
      File.write(tmp, pem, perm: 0o644)
      File.rename(tmp, bundle)
    end
    bundle
  end

  # The outcome of one hostguard command.
  class Result
    attr_reader :command, :exitstatus, :report, :stderr

    def initialize(command, exitstatus, report, stderr)
      @command = command
      @exitstatus = exitstatus
      @report = report
      @stderr = stderr
    end

    def resources
      (report && report['resources']) || []
    end

    def not_in_sync
      resources.reject { |r| r['status'] == 'in_sync' }
    end

    def changed
      resources.select { |r| r['status'] == 'changed' }
    end

    def failed
      resources.select { |r| r['status'] == 'failed' }
    end

    # 0 and 2 succeed; 1, 4 and 6 (or no report at all) fail the Chef run.
    def ok?
      [0, 2].include?(exitstatus) && !report.nil?
    end

    # A report whose resources say what happened, failures included (0, 2, 4, 6).
    def reported?
      [0, 2, 4, 6].include?(exitstatus) && !report.nil?
    end

    # One line per resource that drifts (plan) or changed (apply), for converge_by: why-run
    # prints them as "Would ...". Failed ones are in error_message instead.
    def descriptions
      not_in_sync.reject { |r| r['status'] == 'failed' }.map { |r| Hostguard.describe(r) }
    end

    # hostguard's own words for a run that did not succeed.
    def error_message
      detail = if failed.any?
                 failed.map { |r| "#{r['id']}: #{r['message']}" }.join('; ')
               elsif !stderr.to_s.strip.empty?
                 stderr.strip
               else
                 'no report on standard output'
               end
      "hostguard #{command} exited #{exitstatus}: #{detail}"
    end
  end

  # "set sysctl/net.ipv4.ip_forward from 0 to 1", or "converge iptables/ipv4/filter/FORWARD" when
  # the value alone does not say what differs; then hostguard's message and diff lines.
  def self.describe(resource)
    current = resource['current']
    desired = resource['desired']
    text = if current == desired
             "converge #{resource['id']}"
           else
             "set #{resource['id']} from #{current.nil? ? '(absent)' : current} to #{desired.nil? ? '(absent)' : desired}"
           end
    text += " (#{resource['message']})" unless resource['message'].to_s.empty?
    text += " [restart required]" if resource['restart_required']
    diff = Array(resource['diff'])
    diff.empty? ? text : ([text] + diff.map { |l| "  #{l}" }).join("\n")
  end

  # Builds argv and runs one command of the binary.
  class Runner
    attr_reader :binary

    # `logger` gets one debug line per command (Chef passes its own; the tests a StringIO one).
    def initialize(binary:, root: nil, extra_args: [], timeout: DEFAULT_TIMEOUT, logger: nil)
      @binary = binary
      @root = root
      @extra_args = Array(extra_args).map(&:to_s)
      @timeout = timeout
      @logger = logger
    end

    def argv(command, state, command_args = [])
      args = [@binary, command, '--format', 'json']
      args += ['--root', @root] if @root
      args + command_args.map(&:to_s) + @extra_args + [state].compact
    end

    # `hostguard plan` over the document on standard input: writes nothing.
    def plan(document)
      execute('plan', argv('plan', '-'), json(document))
    end

    # `hostguard apply` over the document on standard input; with `state_file`, the binary saves
    # it there once valid (`--save-state`, only when it changed), so `hostguard plan` by hand
    # sees what Chef applied. `args` are apply's own options (`--backup-dir DIR`); extra_args go
    # to every command.
    def apply(document, state_file: nil, args: [])
      args += ['--save-state', state_file] if state_file
      execute('apply', argv('apply', '-', args), json(document))
    end

    # `hostguard audit` (SPEC section 8), with or without a document.
    def audit(document = nil, fail_on: nil)
      extra = fail_on ? ['--fail-on', fail_on.to_s] : []
      if document
        execute('audit', argv('audit', '-', extra), json(document))
      else
        execute('audit', argv('audit', nil, extra), nil)
      end
    end

    def version
      cmd = shell_out!([@binary, '--version'], nil)
      cmd.exitstatus.zero? ? cmd.stdout.strip.sub(/\Ahostguard\s+/, '') : nil
    rescue Error
      nil
    end

    private

    def json(document)
      JSON.pretty_generate(document) + "\n"
    end

    def execute(command, args, stdin)
      cmd = shell_out!(args, stdin)
      out = cmd.stdout
      report = begin
        out.strip.empty? ? nil : JSON.parse(out)
      rescue JSON::ParserError
        nil
      end
      Result.new(command, cmd.exitstatus, report, cmd.stderr)
    end

    # Chef's shell_out! when running under Chef, Mixlib::ShellOut otherwise: argv (no shell),
    # the document on standard input, every hostguard exit code accepted (the Result judges
    # them), and a timeout, so a hung iptables cannot hang the Chef run.
    def shell_out!(args, stdin)
      @logger&.debug("hostguard: running #{args.join(' ')} (timeout #{@timeout} s)")
      opts = { input: stdin.to_s, timeout: @timeout, returns: EXIT_CODES + [127] }
      cmd = if defined?(Chef::Mixin::ShellOut)
              Class.new { include Chef::Mixin::ShellOut }.new.shell_out!(*args, **opts)
            else
              Mixlib::ShellOut.new(*args, **opts).tap(&:run_command).tap(&:error!)
            end
      raise Error, "cannot run hostguard binary #{@binary}: exit 127" if cmd.exitstatus == 127
      cmd
    rescue Mixlib::ShellOut::CommandTimeout
      raise Error, "hostguard #{args[1]} did not finish within #{@timeout} s (#{args.join(' ')}); a hung iptables or lock holder?"
    rescue Mixlib::ShellOut::ShellCommandFailed => e
      raise Error, "hostguard #{args[1]}: #{e.message.lines.first.to_s.strip}"
    rescue SystemCallError => e
      raise Error, "cannot run hostguard binary #{@binary}: #{e.message}"
    end
  end
end
