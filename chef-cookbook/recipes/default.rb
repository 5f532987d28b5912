# Converges this node with hostguard from node['hostguard'] (see attributes/default.rb).
hg = node['hostguard']

if hg['download_url']
  raise 'hostguard: download_url needs download_sha256, so an altered binary is never run' unless hg['download_sha256']
  Hostguard.check_sha256!(hg['download_sha256'])
  directory ::File.dirname(hg['binary']) do
    recursive true
  end
  remote_file hg['binary'] do
    source hg['download_url']
    checksum hg['download_sha256']
    mode '0755'
  end
end

hostguard_state 'default' do
  document Hostguard.plain(hg['document'])
  binary hg['binary']
  root hg['root'] if hg['root']
  extra_args Array(hg['extra_args']).map(&:to_s)
  apply_args Array(hg['apply_args']).map(&:to_s)
  state_file hg['state_file'] if hg['state_file']
  timeout hg['timeout'] if hg['timeout']
  confirm_probe hg['confirm_probe'] unless hg['confirm_probe'].nil?
  confirm Integer(hg['confirm']) if hg['confirm']
end
