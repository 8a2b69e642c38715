"""Compare the per-test outcomes of the baseline (plain torchvision) and omnizoo runs made by run.sh.

usage: compare.py BASELINE.jsonl OMNIZOO.jsonl [TITLE]
Input: the JSON-lines files written by tv_omnizoo_plugin.py --oz-log (one line per test phase).
Prints, per test function, counts of (baseline, omnizoo) outcome pairs, then every test that
passes on torchvision but not with omnizoo, with the first line of its failure, and which test
functions never reached omnizoo (oz_calls == 0 in every test: they build models from classes,
not builders, and so cannot tell omnizoo from torchvision).
Same approach as ../timm/compare.py.
"""
import collections
import json
import sys

RANK = {'passed': 0, 'skipped': 1, 'failed': 2, 'error': 3}


def load(path):
    out = {}
    try:
        fh = open(path)
    except FileNotFoundError:
        return out
    with fh:
        for line in fh:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            nid = r['nodeid'].split('::', 1)[-1]
            prev = out.get(nid)
            calls = r.get('oz_calls')
            if prev is not None and calls is None:
                calls = prev[2]
            elif prev is not None and prev[2] is not None:
                calls = max(calls, prev[2])
            if prev is None or RANK[r['outcome']] > RANK[prev[0]]:
                out[nid] = (r['outcome'], r.get('msg', ''), calls)
            else:
                out[nid] = (prev[0], prev[1], calls)
    return out


def short(o):
    return {'passed': 'pass', 'skipped': 'skip', 'failed': 'FAIL', 'error': 'ERR', 'not run': 'n/a'}[o]


def main():
    base, oz = load(sys.argv[1]), load(sys.argv[2])
    title = sys.argv[3] if len(sys.argv) > 3 else 'torchvision baseline > omnizoo'
    names = sorted(set(base) | set(oz))
    table = collections.defaultdict(collections.Counter)
    reached = collections.defaultdict(int)
    regress = []
    for n in names:
        fn = n.split('[', 1)[0]
        b = base.get(n, ('not run', '', None))[0]
        o = oz.get(n, ('not run', '', None))[0]
        table[fn][(b, o)] += 1
        if (oz.get(n, (None, None, 0))[2] or 0) > 0:
            reached[fn] += 1
        if b == 'passed' and o in ('failed', 'error'):
            regress.append((n, o, oz[n][1]))
    pairs = sorted({p for c in table.values() for p in c}, key=lambda p: (RANK.get(p[0], 9), RANK.get(p[1], 9)))
    head = ' '.join(f'{short(b)+">"+short(o):>10s}' for b, o in pairs)
    print(f'{"test (" + title + ")":50s} {head}')
    tot = collections.Counter()
    for fn in sorted(table):
        print(f'{fn:50s} ' + ' '.join(f'{table[fn][p]:10d}' for p in pairs))
        tot.update(table[fn])
    print(f'{"TOTAL":50s} ' + ' '.join(f'{tot[p]:10d}' for p in pairs))
    never = [fn for fn in sorted(table) if reached[fn] == 0]
    if never:
        print(f'\ntest functions that never called omnizoo.create_model (class-built or skipped): {", ".join(never)}')
    print(f'\n{len(regress)} tests pass on plain torchvision but fail with omnizoo:')
    for n, o, m in regress:
        m = ' '.join(m.split())
        print(f'  {short(o):4s} {n}: {m[:240]}')
    fixed = [n for n in names if base.get(n, ('',))[0] in ('failed', 'error') and oz.get(n, ('',))[0] == 'passed']
    if fixed:
        print(f'\n{len(fixed)} tests fail on plain torchvision but pass with omnizoo:')
        for n in fixed:
            print('  ', n, ' '.join(base[n][1].split())[:200])


if __name__ == '__main__':
    main()
