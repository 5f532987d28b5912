# Tests of the cookbook's library against the real hostguard binary. Run by tests/system/chef-lib
# inside a network namespace it creates, with HOSTGUARD (the binary), HG_ROOT (a temp --root whose
# proc is the real /proc) and HG_TMP (scratch space) set. Never run it outside that sandbox: it
# writes net.ipv4 sysctls.

require 'minitest/autorun'
require 'json'
require 'fileutils'
require 'logger'
require 'stringio'
require_relative '../libraries/hostguard'

%w(HOSTGUARD HG_ROOT HG_TMP HG_AUDIT_ROOT HG_PROBE_URL HG_PROBE_CUT HG_PROBE_KEEP HG_HTTPS_URL HG_HTTPS_CA).each do |v|
  abort "#{v} is not set: run tests/system/chef-lib, which makes the sandbox" unless ENV[v]
end

class HostguardLibraryTest < Minitest::Test
  ROOT = ENV['HG_ROOT']
  TMP = ENV['HG_TMP']
  PERSIST = '/etc/sysctl.d/60-hostguard.conf'.freeze

  def setup
    # Each test starts from the namespace's defaults and an empty --root.
    sysctl_set('net.ipv4.ip_forward', '0')
    sysctl_set('net.ipv4.ip_default_ttl', '64')
    %w(iptables ip6tables).each do |cmd|
      system(cmd, '-P', 'FORWARD', 'ACCEPT', exception: true)
      system(cmd, '-F', 'FORWARD', exception: true)
    end
    FileUtils.rm_rf(File.join(ROOT, 'etc'))
    FileUtils.rm_rf(File.join(TMP, 'state'))
  end

  def sysctl(key)
    File.read("/proc/sys/#{key.tr('.', '/')}").strip
  end

  def sysctl_set(key, value)
    File.write("/proc/sys/#{key.tr('.', '/')}", value)
  end

  def runner(**opts)
    Hostguard::Runner.new(binary: ENV['HOSTGUARD'], root: ROOT, **opts)
  end

  def attributes(values)
    # Shaped like node attributes: symbol and string keys, unset sections.
    { sysctl: { 'persist' => PERSIST, values: values }, 'cgroups' => {}, iptables: nil, 'nftables' => {} }
  end

  def document(values = { 'net.ipv4.ip_forward' => 1, 'net.ipv4.ip_default_ttl' => 61 })
    Hostguard.document(attributes(values))
  end

  def test_document_from_attributes_has_string_keys_a_version_and_no_empty_sections
    doc = document('net.ipv4.ip_forward' => 1)
    assert_equal({ 'version' => 1,
                   'sysctl' => { 'persist' => PERSIST, 'values' => { 'net.ipv4.ip_forward' => 1 } } }, doc)
  end

  def test_argv_passes_root_and_extra_args_before_the_document
    argv = runner(extra_args: ['--lock-timeout', 5]).argv('plan', '-')
    assert_equal [ENV['HOSTGUARD'], 'plan', '--format', 'json', '--root', ROOT, '--lock-timeout', '5', '-'], argv
  end

  def test_plan_describes_each_drifted_resource_and_changes_nothing
    result = runner.plan(document)
    assert_equal 2, result.exitstatus
    assert result.ok?
    assert_equal 3, result.descriptions.size, result.descriptions.inspect
    assert_includes result.descriptions, 'set sysctl/net.ipv4.ip_forward from 0 to 1'
    assert(result.descriptions.any? { |d| d.start_with?('set sysctl/net.ipv4.ip_default_ttl from 64 to 61') }, result.descriptions.inspect)
    file = result.descriptions.find { |d| d.include?('sysctl-file') }
    assert_match(/\+ net.ipv4.ip_default_ttl = 61/, file)
    assert_equal '64', sysctl('net.ipv4.ip_default_ttl')
    refute File.exist?(File.join(ROOT, PERSIST))
  end

  def test_apply_converges_then_a_second_run_has_nothing_to_do
    first = runner.apply(document, state_file: File.join(TMP, 'state/state.json'))
    assert_equal 2, first.exitstatus
    assert first.ok?
    assert_equal %w(sysctl-file/etc/sysctl.d/60-hostguard.conf sysctl/net.ipv4.ip_default_ttl sysctl/net.ipv4.ip_forward),
                 first.changed.map { |r| r['id'] }.sort
    assert_equal '61', sysctl('net.ipv4.ip_default_ttl')
    assert_equal '1', sysctl('net.ipv4.ip_forward')
    assert_includes File.read(File.join(ROOT, PERSIST)), 'net.ipv4.ip_default_ttl = 61'
    assert_equal document, JSON.parse(File.read(File.join(TMP, 'state/state.json')))

    second_plan = runner.plan(document)
    assert_equal 0, second_plan.exitstatus
    assert_empty second_plan.descriptions
    second = runner.apply(document)
    assert_equal 0, second.exitstatus
    assert_empty second.changed
  end

  FORWARD = { 'policy' => 'DROP', 'purge' => true, 'ignore' => ['-j DOCKER'],
              'rules' => ['-i docker0 -o eth0 -j ACCEPT'] }.freeze

  def test_a_document_with_iptables_chains_converges_and_shows_rule_diffs
    doc = Hostguard.document(sysctl: { values: { 'net.ipv4.ip_forward' => 1 } },
                             iptables: { ipv4: { filter: { FORWARD: FORWARD } },
                                         ipv6: { filter: { FORWARD: { policy: 'DROP' } } } })
    plan = runner.plan(doc)
    assert_equal 2, plan.exitstatus, plan.stderr
    forward = plan.descriptions.find { |d| d.include?('iptables/ipv4/filter/FORWARD') }
    assert_match(/\Aset iptables\/ipv4\/filter\/FORWARD from ACCEPT to DROP/, forward)
    assert_includes forward, '+ -A FORWARD -i docker0 -o eth0 -j ACCEPT'
    assert(plan.descriptions.any? { |d| d.start_with?('set iptables/ipv6/filter/FORWARD from ACCEPT to DROP') }, plan.descriptions.inspect)

    applied = runner.apply(doc)
    assert_equal 2, applied.exitstatus, applied.error_message
    assert_equal "-P FORWARD DROP\n-A FORWARD -i docker0 -o eth0 -j ACCEPT\n", `iptables -S FORWARD`
    assert_equal "-P FORWARD DROP\n", `ip6tables -S FORWARD`
    assert_equal 0, runner.plan(doc).exitstatus

    # A foreign rule: same policy, so the description says to converge the chain, with the diff.
    system('iptables', '-A', 'FORWARD', '-j', 'ACCEPT', exception: true)
    drift = runner.plan(doc).descriptions
    assert_equal 1, drift.size, drift.inspect
    assert_match(/\Aconverge iptables\/ipv4\/filter\/FORWARD .*\n  - -A FORWARD -j ACCEPT\z/m, drift.first)
  end

  def test_a_rejected_document_fails_with_hostguards_message_and_touches_nothing
    result = runner.plan(document('net.ipv4.ip_default_ttl' => 62, 'net/../x' => 1))
    assert_equal 1, result.exitstatus
    refute result.ok?
    assert_match(/keys may not walk out of \/proc\/sys/, result.error_message)
    applied = runner.apply(document('net.ipv4.ip_default_ttl' => 62, 'net/../x' => 1))
    assert_equal 1, applied.exitstatus
    assert_equal '64', sysctl('net.ipv4.ip_default_ttl')
  end

  def test_a_change_that_fails_fails_the_run_with_exit_6_and_names_the_resource
    doc = document('net.ipv4.ip_default_ttl' => 61, 'net.ipv4.hostguard_no_such_key' => 1)
    result = runner.apply(doc)
    assert_equal 6, result.exitstatus
    refute result.ok?
    assert_equal ['sysctl/net.ipv4.hostguard_no_such_key'], result.failed.map { |r| r['id'] }
    assert_match(/sysctl\/net.ipv4.hostguard_no_such_key: .*does not exist/, result.error_message)
    assert_equal '61', sysctl('net.ipv4.ip_default_ttl')
  end

  def test_only_failures_exit_4
    sysctl_set('net.ipv4.ip_default_ttl', '61')
    result = runner.apply(Hostguard.document(sysctl: { values: { 'net.ipv4.ip_default_ttl' => 61, 'net.ipv4.hostguard_no_such_key' => 1 } }))
    assert_equal 4, result.exitstatus
    refute result.ok?
  end

  def test_a_missing_binary_is_an_error_that_names_it
    err = assert_raises(Hostguard::Error) do
      Hostguard::Runner.new(binary: File.join(TMP, 'no-such-hostguard')).plan(document)
    end
    assert_match(/no-such-hostguard/, err.message)
  end

  def test_apply_args_go_to_apply_only_and_extra_args_to_every_command
    backups = File.join(TMP, 'backups')
    r = runner(extra_args: ['--lock-timeout', '30'])
    assert_equal 2, r.apply(document, args: ['--backup-dir', backups]).exitstatus
    assert_equal 0, r.plan(document).exitstatus
    assert_equal 2, r.apply(document('net.ipv4.ip_default_ttl' => 62), args: ['--backup-dir', backups]).exitstatus
    kept = Dir[File.join(backups, 'etc_sysctl.d_60-hostguard.conf.*')]
    assert(kept.any? { |f| File.read(f).include?('net.ipv4.ip_default_ttl = 61') }, kept.inspect)
  ensure
    FileUtils.rm_rf(backups)
  end

  def test_a_hung_binary_fails_within_the_timeout_and_names_the_command
    hung = File.join(TMP, 'hung-hostguard')
    File.write(hung, "#!/bin/sh\nsleep 60\n")
    File.chmod(0o755, hung)
    started = Time.now
    err = assert_raises(Hostguard::Error) { Hostguard::Runner.new(binary: hung, timeout: 1).plan(document) }
    assert_operator Time.now - started, :<, 15
    assert_match(/hostguard plan did not finish within 1 s \(#{Regexp.escape(hung)} plan --format json -\)/, err.message)
  ensure
    FileUtils.rm_f(hung)
  end

  def test_each_command_is_logged_at_debug_level
    log = StringIO.new
    runner(logger: Logger.new(log, level: :debug)).plan(document)
    assert_match(/DEBUG.*hostguard: running #{Regexp.escape(ENV['HOSTGUARD'])} plan --format json --root #{Regexp.escape(ROOT)} - \(timeout 900 s\)/, log.string)
  end

  def test_a_plan_that_knows_a_change_will_fail_is_reported_but_not_ok
    result = runner.plan(document('net.ipv4.ip_default_ttl' => 61, 'net.ipv4.hostguard_no_such_key' => 1))
    assert_equal 6, result.exitstatus
    assert result.reported?
    refute result.ok?
    assert(result.descriptions.any? { |d| d.start_with?('set sysctl/net.ipv4.ip_default_ttl from 64 to 61') }, result.descriptions.inspect)
    refute(result.descriptions.any? { |d| d.include?('hostguard_no_such_key') }, result.descriptions.inspect)
    assert_match(/hostguard plan exited 6: sysctl\/net.ipv4.hostguard_no_such_key: .*does not exist/, result.error_message)
    assert_equal '64', sysctl('net.ipv4.ip_default_ttl')
  end

  def test_exit_6_still_describes_what_changed
    result = runner.apply(document('net.ipv4.ip_default_ttl' => 61, 'net.ipv4.hostguard_no_such_key' => 1))
    assert_equal 6, result.exitstatus
    assert result.reported?
    assert(result.descriptions.any? { |d| d.start_with?('set sysctl/net.ipv4.ip_default_ttl from 64 to 61') }, result.descriptions.inspect)
    refute(result.descriptions.any? { |d| d.include?('hostguard_no_such_key') }, result.descriptions.inspect)
  end

  def test_state_file_defaults_under_root
    assert_equal '/etc/hostguard/state.json', Hostguard.default_state_file(nil)
    assert_equal '/srv/lab/etc/hostguard/state.json', Hostguard.default_state_file('/srv/lab')
  end

  def test_a_document_that_is_not_a_hash_is_refused_before_hostguard_runs
    err = assert_raises(Hostguard::Error) { Hostguard.document([1, 2]) }
    assert_equal 'hostguard: the document must be a hash, not Array', err.message
  end

  def test_a_download_sha256_that_is_not_64_hex_digits_is_refused
    assert_equal 'ab' * 32, Hostguard.check_sha256!('ab' * 32)
    err = assert_raises(Hostguard::Error) { Hostguard.check_sha256!('abc') }
    assert_equal 'hostguard: download_sha256 must be 64 hexadecimal digits, not "abc"', err.message
    assert_raises(Hostguard::Error) { Hostguard.check_sha256!('g' * 64) }
  end

  def test_version
    assert_match(/\A\d+\.\d+\.\d+/, runner.version)
  end

  def test_audit_reports_findings_of_the_host
    audit_runner = Hostguard::Runner.new(binary: ENV['HOSTGUARD'], root: ENV['HG_AUDIT_ROOT'])
    result = audit_runner.audit(fail_on: 'low')
    assert_equal 2, result.exitstatus, result.stderr
    assert_includes result.report['findings'].map { |f| f['id'] }, 'sysctl.swappiness'
    empty_host = File.join(TMP, 'empty-host')
    FileUtils.mkdir_p(empty_host)
    clean = Hostguard::Runner.new(binary: ENV['HOSTGUARD'], root: empty_host).audit(fail_on: 'low')
    assert_equal 0, clean.exitstatus, clean.stderr
    assert_empty clean.report['findings']
  end
  def test_confirm_probe_true_is_the_chef_server_urls_host_and_port
    assert_equal ['--confirm', '30', '--confirm-probe', 'chef.example:443'],
                 Hostguard.confirm_args(true, 30, 'https://chef.example/organizations/hg')
    assert_equal ['--confirm', '60', '--confirm-probe', '[2001:db8::5]:8443'],
                 Hostguard.confirm_args(true, 60, 'https://[2001:db8::5]:8443/organizations/hg')
    assert_equal ['--confirm', '9', '--confirm-probe', 'https://ok.example/health'], Hostguard.confirm_args('https://ok.example/health', 9)
    assert_equal [], Hostguard.confirm_args(nil, 60, 'https://chef.example')
    assert_raises(Hostguard::Error) { Hostguard.confirm_args(true, 60, nil) }
  end

  # An INPUT chain with policy DROP and the rules of RULES (JSON text): the change a probe guards.
  def input_drop(rules)
    Hostguard.document('iptables' => { 'ipv4' => { 'filter' => { 'INPUT' => { 'policy' => 'DROP', 'rules' => JSON.parse(rules) } } } })
  end

  def assert_rolled_back(result, *why)
    assert_equal 4, result.exitstatus, result.error_message
    refute result.ok?
    why.each { |w| assert_includes result.error_message, w }
    assert_equal '-P INPUT ACCEPT', `iptables -S INPUT`.strip
  end

  def assert_kept(result, answer)
    assert_equal 2, result.exitstatus, result.error_message
    assert(result.descriptions.any? { |d| d.include?("kept: #{answer}") }, result.descriptions.inspect)
    assert_equal '-P INPUT DROP', `iptables -S INPUT`.lines.first.strip
  end

  def reset_input
    system('iptables', '-P', 'INPUT', 'ACCEPT')
    system('iptables', '-F', 'INPUT')
  end

  # The Chef server beyond a veth (tests/system/chef-lib: HG_PROBE_URL, a listener on its port):
  # rules that cut the path are rolled back and fail; rules that keep it are confirmed.
  def test_confirm_probe_rolls_back_a_change_that_cuts_the_chef_server_and_keeps_one_that_does_not
    url = ENV.fetch('HG_PROBE_URL')
    assert_rolled_back(runner.apply(input_drop(ENV['HG_PROBE_CUT']), args: Hostguard.confirm_args(true, 4, url)),
                       'rolled back: 10.79.0.2:8443 did not answer')
    assert_kept(runner.apply(input_drop(ENV['HG_PROBE_KEEP']), args: Hostguard.confirm_args(true, 4, url)),
                'TCP connect to 10.79.0.2:8443')
  ensure
    reset_input
  end

  # An https:// probe of a server whose certificate a private CA signed (tests/system/chef-lib:
  # HG_HTTPS_URL on the namespace's 127.0.0.1, HG_HTTPS_CA): without that CA the server is not
  # trusted and the change is rolled back; with the CA in Chef's trusted_certs_dir, as the
  # resource passes it, the change is kept.
  def test_an_https_confirm_probe_trusts_the_ca_chef_trusts
    url = ENV.fetch('HG_HTTPS_URL')
    doc = input_drop(ENV['HG_PROBE_KEEP'])
    assert_rolled_back(runner.apply(doc, args: Hostguard.confirm_args(url, 3)), "rolled back: #{url} did not answer", 'UnknownIssuer')
    certs = File.join(TMP, 'trusted_certs')
    FileUtils.mkdir_p(certs)
    FileUtils.cp(ENV.fetch('HG_HTTPS_CA'), File.join(certs, 'hg_test_ca.crt'))
    ca = Hostguard.ca_bundle(nil, certs, File.join(TMP, 'hostguard-ca.pem'))
    assert_kept(runner.apply(doc, args: Hostguard.confirm_args(url, 3, ca_file: ca)), "GET #{url} answered 200 OK")
  ensure
    reset_input
  end

  # metadata.rb read the way Chef's metadata DSL reads it: each line a method call with its
  # arguments (Chef itself is not installable here).
  def test_metadata_names_what_supermarket_needs_and_no_address_that_does_not_exist
    fields = Hash.new { |h, k| h[k] = [] }
    recorder = Object.new
    recorder.define_singleton_method(:method_missing) { |name, *args| fields[name] << args }
    recorder.define_singleton_method(:respond_to_missing?) { |*| true }
    path = File.expand_path('../metadata.rb', __dir__)
    recorder.instance_eval(File.read(path), path)
    %i(name version maintainer license description chef_version).each do |f|
      assert_equal 1, fields[f].size, "metadata.rb sets #{f} once"
    end
    assert_equal [['hostguard']], fields[:name]
    assert_match(/\A\d+\.\d+\.\d+\z/, fields[:version].first.first)
    assert_equal [['>= 16.0', '< 20']], fields[:chef_version], 'Chef Infra 16 through 19'
    assert_equal [['Apache-2.0']], fields[:license]
    %i(source_url issues_url).each do |f|
      fields[f].each { |(url)| assert url.start_with?('https://') && !url.include?('example.invalid'), "#{f} #{url}" }
    end
    refute_match(/example\.invalid/, File.read(path))
  end

  def test_the_ca_of_an_https_probe_is_what_chef_trusts_unless_the_options_name_one
    certs = File.join(TMP, 'certs')
    FileUtils.rm_rf(certs)
    FileUtils.mkdir_p(certs)
    bundle = File.join(TMP, 'bundle.pem')
    FileUtils.rm_f(bundle)
    assert_nil Hostguard.ca_bundle(nil, certs, bundle), 'Chef trusts nothing of its own: no --ca-file'
    assert_nil Hostguard.ca_bundle(File.join(TMP, 'missing.pem'), File.join(TMP, 'missing'), bundle)
    ca = File.read(ENV.fetch('HG_HTTPS_CA'))
    File.write(File.join(certs, 'a.crt'), ca)
    assert_equal File.join(certs, 'a.crt'), Hostguard.ca_bundle(nil, certs, bundle), 'one file is used as it is'
    File.write(File.join(TMP, 'ssl_ca_file.pem'), ca)
    File.write(File.join(certs, 'b.pem'), ca)
    File.write(File.join(certs, 'notes.txt'), 'not a certificate')
    assert_equal bundle, Hostguard.ca_bundle(File.join(TMP, 'ssl_ca_file.pem'), certs, bundle)
    assert_equal "#{ca.strip}\n" * 3, File.read(bundle), 'ssl_ca_file, then a.crt and b.pem, each once'
    inode = File.stat(bundle).ino
    Hostguard.ca_bundle(File.join(TMP, 'ssl_ca_file.pem'), certs, bundle)
    assert_equal inode, File.stat(bundle).ino, 'an unchanged bundle is not rewritten'
    assert_equal ['--confirm', '5', '--confirm-probe', 'https://h.example/', '--ca-file', bundle],
                 Hostguard.confirm_args('https://h.example/', 5, ca_file: bundle)
    assert_equal ['--confirm', '5', '--confirm-probe', 'h.example:443'],
                 Hostguard.confirm_args('h.example:443', 5, ca_file: bundle), 'a TCP probe needs no CA'
    assert_equal ['--confirm', '5', '--confirm-probe', 'https://h.example/'],
                 Hostguard.confirm_args('https://h.example/', 5, ca_file: bundle, given: ['--ca-file', '/own.pem'])
  end
end
