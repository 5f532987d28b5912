# The hostguard_state type's parameters: how a document is read and refused, and the defaults.
require 'spec_helper'

describe Puppet::Type.type(:hostguard_state) do
  def make(params)
    described_class.new({ name: 'host' }.merge(params))
  end

  it 'adds version 1 to a hash document' do
    expect(make(document: { 'sysctl' => { 'values' => {} } })[:document]).to eq('version' => 1, 'sysctl' => { 'values' => {} })
  end

  it 'reads a document given as JSON text, as file() returns it' do
    expect(make(document: '{"sysctl": {"values": {"vm.swappiness": 10}}}')[:document])
      .to eq('version' => 1, 'sysctl' => { 'values' => { 'vm.swappiness' => 10 } })
  end

  it 'refuses a document that is an array' do
    expect { make(document: [1, 2]) }.to raise_error(Puppet::ResourceError, /document must be a hash \(or the JSON text of one\), not Array/)
  end

  it 'refuses JSON text that is not an object' do
    expect { make(document: '[1, 2]') }.to raise_error(Puppet::ResourceError, /document must be a hash/)
  end

  it 'refuses text that is not JSON' do
    expect { make(document: 'sysctl: {}') }.to raise_error(Puppet::ResourceError, /document is not valid JSON/)
  end

  it 'needs a document' do
    expect { make({}) }.to raise_error(Puppet::ResourceError, /needs a document/)
  end

  it 'saves the document under /etc by default' do
    expect(make(document: {})[:state_file]).to eq('/etc/hostguard/state.json')
  end

  it 'saves the document under root when root is set' do
    expect(make(document: {}, root: '/srv/lab')[:state_file]).to eq('/srv/lab/etc/hostguard/state.json')
  end

  it 'keeps a state_file that is given' do
    expect(make(document: {}, root: '/srv/lab', state_file: '/var/lib/hg.json')[:state_file]).to eq('/var/lib/hg.json')
  end

  it 'refuses a relative binary' do
    expect { make(document: {}, binary: 'hostguard') }.to raise_error(Puppet::ResourceError, /binary must be an absolute path/)
  end
end
