# The `json` stdout callback. ansible-core (what the sandbox image installs) does not ship one:
# it lives in the ansible.posix collection of the full `ansible` package (~290 MB). This is a
# small stand-in producing the same document shape ({"plays": [...], "stats": {...}}), so
# ANSIBLE_STDOUT_CALLBACK=json works the same with or without that collection.
from __future__ import annotations

import json

from ansible.parsing.ajson import AnsibleJSONEncoder
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = '''
    name: json
    type: stdout
    short_description: one JSON document with every play, task, host result and the stats
    description:
      - Same shape as ansible.posix.json; written when the playbook ends.
'''


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'json'

    def __init__(self, display=None):
        super().__init__(display)
        self.results = []

    def v2_playbook_on_play_start(self, play):
        self.results.append({'play': {'name': play.get_name(), 'id': str(play._uuid)}, 'tasks': []})

    def v2_playbook_on_task_start(self, task, is_conditional):
        if not self.results:
            self.results.append({'play': {'name': '', 'id': ''}, 'tasks': []})
        self.results[-1]['tasks'].append({'task': {'name': task.get_name(), 'id': str(task._uuid)}, 'hosts': {}})

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def _record(self, result, **extra):
        entry = dict(self._clean_results_copy(result))
        entry.update(extra)
        tasks = self.results[-1]['tasks'] if self.results else []
        # Under the free strategy results can arrive for an earlier task: match by task id.
        for t in reversed(tasks):
            if t['task']['id'] == str(result._task._uuid):
                t['hosts'][result._host.get_name()] = entry
                return
        if tasks:
            tasks[-1]['hosts'][result._host.get_name()] = entry

    @staticmethod
    def _clean_results_copy(result):
        return {k: v for k, v in result._result.items() if not k.startswith('_ansible_') or k == '_ansible_no_log'}

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, failed=True, ignore_errors=bool(ignore_errors))

    def v2_runner_on_unreachable(self, result):
        self._record(result, unreachable=True)

    def v2_runner_on_skipped(self, result):
        self._record(result, skipped=True)

    def v2_playbook_on_stats(self, stats):
        summary = {h: stats.summarize(h) for h in sorted(stats.processed.keys())}
        output = {
            'plays': self.results,
            'stats': summary,
            'custom_stats': stats.custom,
            'global_custom_stats': stats.custom.get('_run', {}),
        }
        self._display.display(json.dumps(output, cls=AnsibleJSONEncoder, indent=2, sort_keys=True))
