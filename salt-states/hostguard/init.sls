{#- Converges this minion with hostguard from pillar `hostguard` (see pillar.example). -#}
{%- set hg = salt['pillar.get']('hostguard', {}) %}
{%- set binary = hg.get('binary', '/usr/local/bin/hostguard') %}
{%- set sha256 = hg.get('download_sha256') | string %}

{%- if hg.get('download_url') %}
{%- if not (sha256 | regex_match('([0-9a-fA-F]{64})')) or sha256 | length != 64 %}
{#- Refused before anything is downloaded, so an altered binary is never run. #}
hostguard-binary:
  test.fail_without_changes:
    - name: {{ ("hostguard: download_sha256 must be 64 hexadecimal digits, not " ~ sha256) | yaml_dquote }}
    - require_in:
      - hostguard: hostguard
{%- else %}
hostguard-binary:
  file.managed:
    - name: {{ binary }}
    - source: {{ hg.download_url }}
    - source_hash: sha256={{ sha256 }}
    - mode: '0755'
    - makedirs: True
    - require_in:
      - hostguard: hostguard
{%- endif %}
{%- endif %}

hostguard:
  hostguard.converged:
    - binary: {{ binary }}
{%- if hg.get('root') %}
    - root: {{ hg.root }}
{%- endif %}
{%- if hg.get('state_file') %}
    - state_file: {{ hg.state_file }}
{%- endif %}
{%- if hg.get('download_url') %}
    - download_url: {{ hg.download_url }}
    - download_sha256: {{ sha256 }}
{%- endif %}
    - extra_args: {{ hg.get('extra_args', []) | json }}
    - apply_args: {{ hg.get('apply_args', []) | json }}
{%- if hg.get('confirm_probe') is not none %}
    - confirm_probe: {{ hg.confirm_probe | json }}
{%- endif %}
{%- if hg.get('confirm') %}
    - confirm: {{ hg.confirm }}
{%- endif %}
    - document: {{ hg.get('document', {}) | json }}
