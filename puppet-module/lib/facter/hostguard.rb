# The `hostguard` fact: the binary's version, what the last Puppet run of hostguard found, and
# the host's hardening findings (`hostguard audit`, read-only).
#
#   hostguard => { version => '0.1.0', binary => '/usr/local/bin/hostguard',
#                  audit => { summary => { high => 1, ... }, findings => [{ id, severity, subject, title }] },
#                  last_plan => { exit_code => 2, summary => {...}, not_in_sync => [...] },
#                  last_apply => {...} }
#
# `hostguard audit` reads the whole host, so it does not run at every fact resolution: its result
# is kept in $vardir/hostguard/audit.json and run again only when that is older than an hour, or
# older than the last `hostguard apply` (which may have closed or opened findings).

require 'json'
require 'open3'
require 'fileutils'
require 'time'

module HostguardFact
  AUDIT_TTL = 3600

  def self.audit(binary, root, last_apply, cache)
    if cache && File.file?(cache)
      age_ok = Time.now - File.mtime(cache) < AUDIT_TTL
      applied = (Time.parse(last_apply.to_s) rescue nil)
      if age_ok && !(applied && applied > File.mtime(cache))
        kept = (JSON.parse(File.read(cache)) rescue nil)
        return kept['audit'] if kept.is_a?(Hash) && kept['binary'] == binary && kept['root'] == root
      end
    end
    audit = run_audit(binary, root)
    if cache && !audit.key?('error')
      begin
        FileUtils.mkdir_p(File.dirname(cache))
        File.write("#{cache}.tmp", JSON.generate('binary' => binary, 'root' => root, 'audit' => audit))
        File.rename("#{cache}.tmp", cache)
      rescue SystemCallError
        nil
      end
    end
    audit
  end

  # Hardening findings (SPEC section 8), read-only; under the root the last run used.
  def self.run_audit(binary, root)
    argv = [binary, 'audit', '--format', 'json', '--fail-on', 'high']
    argv += ['--root', root] if root
    out, err, st = Open3.capture3(*argv)
    if [0, 2].include?(st.exitstatus)
      report = JSON.parse(out)
      { 'summary' => report['summary'],
        'findings' => (report['findings'] || []).map { |f| f.slice('id', 'severity', 'subject', 'title') } }
    else
      { 'error' => err.strip }
    end
  rescue SystemCallError, JSON::ParserError => e
    { 'error' => e.message }
  end
end

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
    audit = version ? HostguardFact.audit(binary, last['root'], (last['last_apply'] || {})['started_at'], status && File.join(File.dirname(status), 'audit.json')) : nil
    if version || !last.empty?
      { 'version' => version, 'binary' => binary, 'audit' => audit }.merge(last.reject { |k, _| %w(binary root).include?(k) })
    end
  end
end
