name 'hostguard'
maintainer 'hostguard'
license 'Apache-2.0'
description 'Converges a container host (sysctl, cgroups, iptables, LXC) with the hostguard binary; drift shows as updated resources and in why-run'
version '0.1.0'
# Chef Infra Client 16 (unified_mode, per-action required properties) through 19.
chef_version '>= 16.0', '< 20'
# No source_url, issues_url or maintainer_email: the project has no public home yet, and an address
# that does not exist would be worse than none. All three are optional in metadata.rb (Supermarket's
# linters only warn); set them to the repository's address once it is published.
supports 'debian', '>= 11.0'
supports 'ubuntu', '>= 20.04'
supports 'redhat', '>= 8.0'
