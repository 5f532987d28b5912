# The `hostguard` fact: the binary's version, what the last Puppet run of hostguard found, and
# the host's hardening findings (`hostguard audit`, read-only).
#
#   hostguard => { version => '0.1.0', binary => '/usr/local/bin/hostguard',
#                  audit => { summary => { high => 1, ... }, findings => [{ id, severity, subject, title }] },
#                  last_plan => { exit_code => 2, summary => {...}, not_in_sync => [...] },
#                  last_apply => {...} }

require 'json'
require 'open3'

Facter.add(:hostguard) do
  setcode do
    status = if defined?(Puppet) && Puppet.respond_to?(:[]) && Puppet[:vardir]
               File.join(Puppet[:vardir], 'hostguard', 'last_run.json')
             end
    last = begin
      status && File.file?(status) ? JSON.parse(File.read(status)) : {}
    rescue JSON::ParserError
      {}
    end
    binary = last['binary'] || '/usr/local/bin/hostguard'
    version = begin
      out, _err, st = Open3.capture3(binary, '--version')
      st.success? ? out.strip.sub(/\Ahostguard\s+/, '') : nil
    rescue SystemCallError
      nil
    end
    audit = nil
    if version
      # Hardening findings (SPEC section 8), read-only; under the root the last run used.
      argv = [binary, 'audit', '--format', 'json', '--fail-on', 'high']
      argv += ['--root', last['root']] if last['root']
      begin
        out, err, st = Open3.capture3(*argv)
        audit = if [0, 2].include?(st.exitstatus)
                  report = JSON.parse(out)
                  { 'summary' => report['summary'],
                    'findings' => (report['findings'] || []).map { |f| f.slice('id', 'severity', 'subject', 'title') } }
                else
                  { 'error' => err.strip }
                end
      rescue SystemCallError, JSON::ParserError => e
        audit = { 'error' => e.message }
      end
    end
    if version || !last.empty?
      { 'version' => version, 'binary' => binary, 'audit' => audit }.merge(last.reject { |k, _| %w(binary root).include?(k) })
    end
  end
end
