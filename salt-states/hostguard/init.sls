{#- Converges this minion with hostguard from pillar `hostguard` (see pillar.example). -#}
{%- set hg = salt['pillar.get']('hostguard', {}) %}
{%- set binary = hg.get('binary', '/usr/local/bin/hostguard') %}

{%- if hg.get('download_url') %}
hostguard-binary:
  file.managed:
    - name: {{ binary }}
    - source: {{ hg.download_url }}
    - source_hash: sha256={{ hg.download_sha256 }}
    - mode: '0755'
    - makedirs: True
    - require_in:
      - hostguard: hostguard
{%- endif %}

hostguard:
  hostguard.converged:
    - binary: {{ binary }}
{%- if hg.get('root') %}
    - root: {{ hg.root }}
{%- endif %}
    - extra_args: {{ hg.get('extra_args', []) | json }}
    - apply_args: {{ hg.get('apply_args', []) | json }}
    - state_file: {{ hg.get('state_file', '/etc/hostguard/state.json') }}
    - document: {{ hg.get('document', {}) | json }}
