# rspec-puppet setup: the module under spec/fixtures/modules (rake spec_prep, from .fixtures.yml).
RSpec.configure { |c| c.mock_with :rspec }
require 'puppetlabs_spec_helper/module_spec_helper'

RSpec.configure do |c|
  c.default_facts = { 'networking' => { 'hostname' => 'node1' } }
end
