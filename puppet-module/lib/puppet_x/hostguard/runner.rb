# Runs the hostguard binary as an argument vector and reads its JSON report (SPEC sections 2 and 4).
#
# Thin on purpose: no comparison of values happens here. Exit codes decide success; the report's
# resources decide what Puppet shows.

require 'json'
require 'open3'

module PuppetX
  module Hostguard
    class Error < StandardError; end

    # The state document from what a manifest gives: a Hash, or the JSON text of one (so
    # `file('profile/hostguard.json')` works without stdlib's parsejson). `version` defaults to 1;
    # hostguard validates the rest. Anything else is refused before hostguard runs.
    def self.document(value)
      value = parse_json(value) if value.is_a?(String)
      raise Error, "document must be a hash (or the JSON text of one), not #{value.class}" unless value.is_a?(Hash)
      { 'version' => 1 }.merge(value.reject { |_k, v| v.nil? || v == :undef })
    end

    def self.parse_json(text)
      JSON.parse(text)
    rescue JSON::ParserError => e
      raise Error, "document is not valid JSON: #{e.message.lines.first.to_s.strip}"
    end

    # /etc/hostguard/state.json under the root, so a lab run with a root never writes the
    # machine's own /etc.
    def self.default_state_file(root)
      File.join(root.to_s.empty? ? '/' : root.to_s, 'etc/hostguard/state.json')
    end

    # The `--confirm-probe` target of `confirm_probe => true`: this agent's Puppet server, the
    # connection a firewall change could cut — the first `server_list` entry when set, else
    # `server`, with `serverport` (8140).
    def self.server_target
      list = Array(Puppet[:server_list]).reject { |e| e.nil? || e.empty? }
      host, port = list.empty? ? [Puppet[:server], Puppet[:serverport]] : [list.first[0], list.first[1] || Puppet[:serverport]]
      host = host.to_s
      host = "[#{host}]" if host.include?(':') && !host.start_with?('[')
      "#{host}:#{port}"
    end

    # The apply options of an unattended `--confirm SECONDS --confirm-probe TARGET`: `probe` true
    # (or 'server') means this agent's server, a String is the target as hostguard takes it
    # (HOST:PORT or https://...), nil or false no probe. An https:// target is checked against
    # Puppet's own CA too (`ca_args`); `given` are the options already on the command line.
    def self.confirm_args(probe, seconds, given = [])
      return [] if probe.nil? || probe == false || probe.to_s == 'false' || probe.to_s.empty?
      target = [true, 'true', 'server'].include?(probe) ? server_target : probe.to_s
      ['--confirm', seconds.to_s, '--confirm-probe', target] + ca_args(target, given)
    end

    # `--ca-file` with the CA this agent trusts its Puppet server by (`localcacert`), for an
    # https:// probe target: a Puppet server's own URL (`/status/v1/simple`) is signed by that CA,
    # not by one of the system's. Nothing when the agent has no CA file yet (a masterless node)
    # or the options already name a `--ca-file`, which hostguard takes once.
    def self.ca_args(target, given)
      return [] unless target.start_with?('https://')
      return [] if Array(given).map(&:to_s).include?('--ca-file')
      ca = Puppet[:localcacert].to_s
      File.readable?(ca) ? ['--ca-file', ca] : []
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

      # Resources hostguard would change (plan) or did touch (apply).
      def not_in_sync
        resources.reject { |r| r['status'] == 'in_sync' }
      end

      def find(id)
        resources.find { |r| r['id'] == id }
      end

      # 0 and 2 are success; 4, 6 (some changes failed) and 1 (document or host unreadable) are not.
      def ok?
        [0, 2].include?(exitstatus) && !report.nil?
      end

      # A report whose resources say what happened, failures included (0, 2, 4, 6); exit 1 or no
      # report means hostguard could not read the document or the host.
      def reported?
        [0, 2, 4, 6].include?(exitstatus) && !report.nil?
      end

      # What to tell the user when the run did not succeed: hostguard's own words.
      def error_message
        failed = resources.select { |r| r['status'] == 'failed' }
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

    # Builds argv and runs one command.
    class Runner
      attr_reader :binary

      def initialize(binary:, root: nil, extra_args: [])
        @binary = binary
        @root = root
        @extra_args = Array(extra_args).map(&:to_s)
      end

      # `command_args` are options of this command only (apply's `--backup-dir`); `extra_args`
      # go to every command.
      def argv(command, state, command_args = [])
        args = [@binary, command, '--format', 'json']
        args += ['--root', @root] if @root
        args + Array(command_args).map(&:to_s) + @extra_args + [state].compact
      end

      # Runs `command` over `document` (a Hash) on standard input. With `state_file` (apply), the
      # binary also saves the document there once valid, only when it changed (`--save-state`);
      # without, nothing is written (what dry runs use).
      def run(command, document, state_file: nil, command_args: [])
        json = JSON.pretty_generate(document) + "\n"
        args = Array(command_args) + (state_file ? ['--save-state', state_file] : [])
        execute(command, argv(command, '-', args), json)
      end

      # `hostguard --version`, or nil when the binary cannot run.
      def version
        out, _err, status = Open3.capture3(@binary, '--version')
        status.success? ? out.strip.sub(/\Ahostguard\s+/, '') : nil
      rescue SystemCallError
        nil
      end

      private

      def execute(command, args, stdin)
        out, err, status = Open3.capture3(*args, stdin_data: stdin.to_s)
        report = begin
          out.strip.empty? ? nil : JSON.parse(out)
        rescue JSON::ParserError
          nil
        end
        Result.new(command, status.exitstatus, report, err)
      rescue SystemCallError => e
        raise Error, "cannot run hostguard binary #{@binary}: #{e.message}"
      end
    end
  end
end
