# Keeps the outcome of the last hostguard run where the `hostguard` fact reads it.

require 'json'
require 'fileutils'

Puppet::Type.type(:hostguard_state).provide(:hostguard) do
  desc 'Runs the hostguard binary; remembers the last plan and apply for the hostguard fact.'

  def self.status_file
    File.join(Puppet[:vardir], 'hostguard', 'last_run.json')
  end

  # Records the summary of a plan or apply; a failure to record never fails the run.
  def remember(result)
    path = self.class.status_file
    data = File.file?(path) ? (JSON.parse(File.read(path)) rescue {}) : {}
    data['binary'] = resource[:binary]
    data['root'] = resource[:root]
    data["last_#{result.command}"] = {
      'exit_code' => result.exitstatus,
      'started_at' => result.report && result.report['started_at'],
      'summary' => result.report && result.report['summary'],
      'not_in_sync' => result.not_in_sync.map { |r| r['id'] },
      'error' => result.ok? ? nil : result.error_message,
    }
    FileUtils.mkdir_p(File.dirname(path))
    File.write("#{path}.tmp", JSON.pretty_generate(data))
    File.rename("#{path}.tmp", path)
  rescue StandardError => e
    Puppet.warning("hostguard: cannot record the last run in #{path}: #{e.message}")
  end
end
