# The class's catalog: what it declares for each parameter, and what it refuses at compile time.
require 'spec_helper'

describe 'hostguard' do
  context 'with no section' do
    it { is_expected.to compile.with_all_deps }
    it { is_expected.to contain_hostguard_state('hostguard').with_document('version' => 1).with_binary('/usr/local/bin/hostguard') }
    it { is_expected.to have_file_resource_count(0) }
    it { is_expected.to have_exec_resource_count(0) }
  end

  context 'with sections' do
    let(:params) do
      { sysctl: { 'values' => { 'net.ipv4.ip_forward' => 1 } },
        iptables: { 'ipv4' => { 'filter' => { 'FORWARD' => { 'policy' => 'DROP' } } } },
        nftables: { 'tables' => { 'inet hostguard' => { 'chains' => { 'input' => { 'rules' => ['accept'] } } } } } }
    end

    it 'puts exactly the given sections in the document' do
      is_expected.to contain_hostguard_state('hostguard').with_document(
        'version' => 1,
        'sysctl' => { 'values' => { 'net.ipv4.ip_forward' => 1 } },
        'iptables' => { 'ipv4' => { 'filter' => { 'FORWARD' => { 'policy' => 'DROP' } } } },
        'nftables' => { 'tables' => { 'inet hostguard' => { 'chains' => { 'input' => { 'rules' => ['accept'] } } } } },
      )
    end
  end

  context 'with root and no state_file' do
    let(:params) { { root: '/srv/lab' } }

    # The type's default puts it under root (spec/unit/puppet/type/hostguard_state_spec.rb).
    it 'leaves state_file to the type, not the machine\'s /etc' do
      is_expected.to contain_hostguard_state('hostguard').with_root('/srv/lab').without_state_file
    end
  end

  context 'with a download into a directory that does not exist' do
    let(:sha) { 'ab' * 32 }
    let(:params) { { binary: '/opt/hostguard/bin/hostguard', download_url: 'https://files.example.com/hostguard', download_sha256: sha } }

    it { is_expected.to compile.with_all_deps }
    it 'downloads with the checksum, before hostguard runs' do
      is_expected.to contain_file('/opt/hostguard/bin/hostguard')
        .with(source: 'https://files.example.com/hostguard', checksum: 'sha256', checksum_value: sha, mode: '0755')
        .that_comes_before('Hostguard_state[hostguard]')
    end
    it 'makes the directory first' do
      is_expected.to contain_exec('hostguard: mkdir -p /opt/hostguard/bin')
        .with(command: ['mkdir', '-p', '/opt/hostguard/bin'], creates: '/opt/hostguard/bin')
        .that_comes_before('File[/opt/hostguard/bin/hostguard]')
    end
  end

  context 'with a download into a directory the catalog already manages' do
    let(:pre_condition) { "file { '/opt/hg': ensure => directory }" }
    let(:params) { { binary: '/opt/hg/hostguard', download_url: 'https://files.example.com/hostguard', download_sha256: 'ab' * 32 } }

    it { is_expected.to compile.with_all_deps }
    it { is_expected.to have_exec_resource_count(0) }
  end

  context 'with download_url and no download_sha256' do
    let(:params) { { download_url: 'https://files.example.com/hostguard' } }

    it { is_expected.to compile.and_raise_error(/download_url needs download_sha256/) }
  end

  context 'with a download_sha256 that is not 64 hex digits' do
    let(:params) { { download_url: 'https://files.example.com/hostguard', download_sha256: 'abc' } }

    it { is_expected.to compile.and_raise_error(/parameter 'download_sha256' expects/) }
  end

  context 'with a section that is not a hash' do
    let(:params) { { sysctl: ['net.ipv4.ip_forward=1'] } }

    it { is_expected.to compile.and_raise_error(/parameter 'sysctl' expects/) }
  end

  context 'with a relative binary' do
    let(:params) { { binary: 'bin/hostguard' } }

    it { is_expected.to compile.and_raise_error(/parameter 'binary' expects/) }
  end
end
