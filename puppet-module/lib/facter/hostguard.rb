# The `hostguard` fact: the binary's version and what the last Puppet run of hostguard found.
#
#   hostguard => { version => '0.1.0', binary => '/usr/local/bin/hostguard',
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
    if version || !last.empty?
      { 'version' => version, 'binary' => binary }.merge(last.reject { |k, _| k == 'binary' })
    end
  end
end
