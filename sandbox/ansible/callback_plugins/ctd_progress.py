# Progress lines for the CTD step log. The stdout callback is `json` (one document at the end,
# which the step runner classifies); this notification callback streams one line per event on
# stderr meanwhile, prefixed so the runner tells them from ansible's own warnings.
from __future__ import annotations

import json
import sys

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = '''
    name: ctd_progress
    type: notification
    short_description: one JSON progress line per event on stderr
    description:
      - Streams play, task and per-host results as "CTD-PROGRESS {json}" lines on stderr.
'''

MAX_MSG = 300


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'notification'
    CALLBACK_NAME = 'ctd_progress'
    CALLBACK_NEEDS_ENABLED = True

    def _emit(self, text, host=None):
        line = {'text': text}
        if host is not None:
            line['host'] = host
        sys.stderr.write('CTD-PROGRESS ' + json.dumps(line) + '\n')
        sys.stderr.flush()

    @staticmethod
    def _msg(result):
        r = result._result
        msg = r.get('msg') or r.get('stderr') or ''
        return str(msg).strip().splitlines()[0][:MAX_MSG] if str(msg).strip() else ''

    def v2_playbook_on_play_start(self, play):
        self._emit('PLAY [%s]' % play.get_name().strip())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._emit('TASK [%s]' % task.get_name().strip())

    def v2_runner_on_ok(self, result):
        self._emit('changed' if result._result.get('changed') else 'ok', result._host.get_name())

    def v2_runner_on_failed(self, result, ignore_errors=False):
        prefix = 'failed (ignored)' if ignore_errors else 'failed'
        self._emit('%s: %s' % (prefix, self._msg(result)), result._host.get_name())

    def v2_runner_on_unreachable(self, result):
        self._emit('unreachable: %s' % self._msg(result), result._host.get_name())

    def v2_runner_on_skipped(self, result):
        self._emit('skipped', result._host.get_name())

    def v2_playbook_on_stats(self, stats):
        for host in sorted(stats.processed.keys()):
            s = stats.summarize(host)
            self._emit('ok=%d changed=%d unreachable=%d failed=%d skipped=%d' % (
                s['ok'], s['changed'], s['unreachable'], s['failures'], s['skipped']), host)
