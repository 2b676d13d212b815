// The analysis page: an analysis spec run by the API (`analyses:run`): ordered dimensions over
// past N days, from/to or a preset, a table and a chart (bars by dimension, lines when split by
// day, week or month), filters of every kind the API takes, click a row to open the drill-down the
// API gives it, CSV export.
// Everything the page shows is in its URL (#/analysis?…), so an analysis is shared as a link.
// Metrics are chosen (core events added by name: who did it, the share, the money), and an
// analysis is saved, opened, renamed and deleted (saved analyses of the API).
// Dimensions and metrics are data (the lists below), not code: the workbench adds to them.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import * as echarts from 'echarts/core';
import { BarChart, LineChart } from 'echarts/charts';
import { GridComponent, LegendComponent, TooltipComponent } from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';
import type { Api, Schemas } from './api/client';
import type { Key, Lang, Translate } from './i18n';
import { saveBlob } from './save';
import { DIMENSIONS, EVENT_MEASURES, EVENT_NAME, FILTER_OPS, GROUP_KINDS, METRICS, MODELS, PRESETS, TIME_DIMENSIONS, comparable, eventOf, eventsOf, fromAnalysisSpec, fromSaved, toAnalysisSpec, type Condition, type Group, type Spec } from './spec';

echarts.use([BarChart, LineChart, GridComponent, LegendComponent, TooltipComponent, CanvasRenderer]);

type Row = Record<string, string | number | null> & { drill_down?: Schemas['AnalysisSpec'] | null };

/** Rows in one page of the table: thousands of rows are read by paging, exported, or drilled
 * into; drawing them all at once would take the page seconds. */
const PAGE = 100;

export type AnalysisProps = { api: Api; project: string; spec: Spec; t: Translate; lang: Lang; onSpec: (s: Spec) => void };

export function Analysis({ api, project, spec, t, lang, onSpec }: AnalysisProps) {
  // One formatter for every cell: `toLocaleString` builds one per call, which a table of
  // thousands of rows feels.
  const number = useMemo(() => new Intl.NumberFormat(lang === 'zh' ? 'zh-CN' : 'en'), [lang]);
  const [answer, setAnswer] = useState<{ asked: string; value: Schemas['AnalysisAnswer'] } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [first, setFirst] = useState(0);
  const asking = useRef(0);
  const filterDims = Object.keys(spec.filters);
  const request = toAnalysisSpec(spec);
  const asked = JSON.stringify(request);
  useEffect(() => {
    setError(null);
    // Only the answer to the latest question is shown: an earlier one may come back later.
    const question = ++asking.current;
    api.send<Schemas['AnalysisAnswer']>('POST', `/v1/projects/${encodeURIComponent(project)}/analyses:run`, request).then(
      (value) => {
        if (question !== asking.current) return;
        setAnswer({ asked, value });
        setFirst(0);
      },
      (e) => question === asking.current && setError(t('error.load', { message: e instanceof Error ? e.message : String(e) })),
    );
  }, [asked]);
  const rows = (answer?.value.rows ?? []) as unknown as Row[];
  // The metrics of the answer on screen.
  const metrics = (answer?.value.spec.metrics as string[] | undefined) ?? spec.metrics;
  const events = eventsOf(spec.metrics);
  const toggle = (metric: string, on: boolean) => {
    const next = on ? [...spec.metrics, metric] : spec.metrics.filter((m) => m !== metric);
    if (next.length) onSpec({ ...spec, metrics: next });
  };
  const shown = spec.by;
  const cell = (row: Row, d: string) => valueText(d, row[d], t);
  const label = (row: Row) => shown.map((d) => cell(row, d)).join(' · ');
  const remaining = DIMENSIONS.filter((d) => !spec.by.includes(d) && !filterDims.includes(d));
  // The answer to an earlier question stays on screen until the new one comes (no layout
  // shift), but its rows are not the ones asked for: no drilling into them.
  const stale = !answer || answer.asked !== asked;
  // The columns of the answer on screen (it may be an earlier question's, until the new one comes).
  const compared = answer?.value.spec.compare ?? false;
  const drill = (row: Row) => {
    if (row.drill_down && !stale) onSpec(fromAnalysisSpec(row.drill_down, spec));
  };
  const move = (i: number, by: number) => {
    const dims = [...spec.by];
    const [d] = dims.splice(i, 1);
    dims.splice(i + by, 0, d);
    onSpec({ ...spec, by: dims });
  };
  return (
    <section class="analysis">
      <h1>{t('analysis.title')}</h1>
      <SavedBar api={api} project={project} spec={spec} t={t} onSpec={onSpec} />
      <div class="card controls">
        <fieldset>
          <legend>{t('analysis.metrics')}</legend>
          {METRICS.map((m) => (
            <label class="choice" key={m}>
              <input type="checkbox" checked={spec.metrics.includes(m)} onChange={(e) => toggle(m, e.currentTarget.checked)} />
              {t(`metric.${m}` as Key)}
            </label>
          ))}
          {events.map((event) => (
            <span key={event} class="chip">
              {t('analysis.event', { event })}
              <button type="button" aria-label={t('analysis.removeEvent', { event })} onClick={() => {
                const next = spec.metrics.filter((m) => eventOf(m) !== event);
                onSpec({ ...spec, metrics: next.length ? next : ['new_users'] });
              }}>×</button>
            </span>
          ))}
          <EventForm t={t} onAdd={(event) => !events.includes(event) && onSpec({ ...spec, metrics: [...spec.metrics, ...EVENT_MEASURES.map((m) => `${event}_${m}`)] })} />
        </fieldset>
        <fieldset>
          <legend>{t('analysis.whom')}</legend>
          <GroupForm key={JSON.stringify(spec.group)} group={spec.group} t={t} onGroup={(group) => onSpec({ ...spec, group })} />
          <label>
            {t('analysis.model')}{' '}
            <select value={spec.model} disabled={!comparable(spec)} onChange={(e) => onSpec({ ...spec, model: e.currentTarget.value as Spec['model'] })}>
              {MODELS.map((m) => (
                <option key={m} value={m}>{t(`model.${m}` as Key)}</option>
              ))}
            </select>
          </label>
          {spec.model !== 'first_touch' && (
            <label>
              {t('analysis.lookback')}{' '}
              <input type="number" min={1} max={365} value={spec.lookback} onInput={(e) => {
                const days = Number(e.currentTarget.value);
                if (days >= 1 && days <= 365) onSpec({ ...spec, lookback: days });
              }} />
            </label>
          )}
          {!comparable(spec) && <p class="hint">{t('analysis.modelByTime')}</p>}
        </fieldset>
        <fieldset>
          <legend>{t('analysis.dimensions')}</legend>
          <ol class="dims">
            {spec.by.map((d, i) => (
              <li key={d}>
                {t(`dim.${d}` as Key)}
                <button type="button" disabled={i === 0} onClick={() => move(i, -1)} aria-label={t('analysis.up', { name: t(`dim.${d}` as Key) })}>↑</button>
                <button type="button" disabled={i === spec.by.length - 1} onClick={() => move(i, 1)} aria-label={t('analysis.down', { name: t(`dim.${d}` as Key) })}>↓</button>
                <button type="button" disabled={spec.by.length === 1} onClick={() => onSpec({ ...spec, by: spec.by.filter((x) => x !== d) })} aria-label={t('analysis.remove', { name: t(`dim.${d}` as Key) })}>×</button>
              </li>
            ))}
          </ol>
          {remaining.length > 0 && (
            <label>
              {t('analysis.add')}{' '}
              <select value="" onChange={(e) => e.currentTarget.value && onSpec({ ...spec, by: [...spec.by, e.currentTarget.value] })}>
                <option value="">—</option>
                {remaining.map((d) => (
                  <option key={d} value={d}>
                    {t(`dim.${d}` as Key)}
                  </option>
                ))}
              </select>
            </label>
          )}
        </fieldset>
        <fieldset>
          <legend>{t('analysis.range')}</legend>
          <label>
            {t('analysis.pastDays')}{' '}
            <select value={spec.days ?? ''} onChange={(e) => onSpec({ ...spec, days: Number(e.currentTarget.value), from: null, to: null, preset: null })}>
              {spec.days == null && <option value="">—</option>}
              {[7, 14, 30, 90].map((n) => (
                <option key={n} value={n}>
                  {t('analysis.days', { n })}
                </option>
              ))}
            </select>
          </label>
          <label>
            {t('analysis.preset')}{' '}
            <select value={spec.preset ?? ''} onChange={(e) => onSpec({ ...spec, preset: (e.currentTarget.value || null) as Spec['preset'], days: e.currentTarget.value ? null : 7, from: null, to: null })}>
              <option value="">—</option>
              {PRESETS.map((p) => (
                <option key={p} value={p}>
                  {t(`preset.${p}`)}
                </option>
              ))}
            </select>
          </label>
          <RangeForm spec={spec} t={t} onSpec={onSpec} />
          <label class="choice">
            <input type="checkbox" checked={spec.compare && comparable(spec)} disabled={!comparable(spec)} onChange={(e) => onSpec({ ...spec, compare: e.currentTarget.checked })} />
            {t('analysis.compare')}
          </label>
        </fieldset>
        <fieldset>
          <legend>{t('analysis.filters')}</legend>
          {filterDims.length > 0 && (
            <ul class="filters">
              {Object.entries(spec.filters).map(([d, condition]) => {
                const name = dimensionName(d, t);
                return (
                  <li key={d} class="chip">
                    {filterText(name, condition, t)}{' '}
                    <button type="button" class="link" aria-label={t('analysis.removeFilter', { name })} onClick={() => {
                      const { [d]: _removed, ...kept } = spec.filters;
                      onSpec({ ...spec, filters: kept });
                    }}>
                      ×
                    </button>
                  </li>
                );
              })}
            </ul>
          )}
          <FilterForm t={t} taken={filterDims} onAdd={(d, condition) => onSpec({ ...spec, filters: { ...spec.filters, [d]: condition } })} />
          {filterDims.length > 0 && (
            // Back up a drill-down: its filtered dimensions split the rows again.
            <button type="button" onClick={() => onSpec({ ...spec, filters: {}, by: [...filterDims, ...shown.filter((d) => !filterDims.includes(d))] })}>
              {t('analysis.clearFilters')}
            </button>
          )}
        </fieldset>
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      {answer && (
        <>
          <p class="window">{t('analysis.window', { from: answer.value.window.from, to: answer.value.window.to, tz: answer.value.window.tz })}</p>
          {rows.length === 0 && <p class="empty">{t('analysis.empty')}</p>}
          {TIME_DIMENSIONS.includes(shown[0]) ? <Lines rows={rows} dims={shown} t={t} /> : <Chart rows={rows.slice(0, 20)} label={label} t={t} />}
          <div class="scroll">
            <table aria-busy={stale}>
              <thead>
                <tr>
                  {shown.map((d) => (
                    <th scope="col" key={d}>{t(`dim.${d}` as Key)}</th>
                  ))}
                  {metrics.map((m) => [
                    <th scope="col" class="number" key={m}>{metricName(m, t)}</th>,
                    compared && (
                      <th scope="col" class="number" key={`${m}-previous`}>
                        {t('analysis.previousOf', { metric: metricName(m, t) })}
                      </th>
                    ),
                  ])}
                </tr>
              </thead>
              <tbody>
                {rows.slice(first, first + PAGE).map((row, i) => (
                  <tr key={i} class={row.drill_down ? 'drillable' : ''} onClick={() => drill(row)} tabIndex={row.drill_down ? 0 : -1} onKeyDown={(e) => e.key === 'Enter' && drill(row)}>
                    {shown.map((d) => (
                      <td key={d}>{cell(row, d)}</td>
                    ))}
                    {metrics.map((m) => [
                      <td class="number" key={m}>{formatMetric(m, row[m], number)}</td>,
                      compared && (
                        <td class="number" key={`${m}-previous`}>
                          {formatMetric(m, row[`${m}_previous`], number)} ({change(row[`${m}_change`])})
                        </td>
                      ),
                    ])}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {rows.length > PAGE && (
            <p class="pager">
              <button type="button" disabled={first === 0} onClick={() => setFirst(first - PAGE)}>
                {t('analysis.previous')}
              </button>
              <span role="status">{t('analysis.rows', { from: number.format(first + 1), to: number.format(Math.min(first + PAGE, rows.length)), total: number.format(rows.length) })}</span>
              <button type="button" disabled={first + PAGE >= rows.length} onClick={() => setFirst(first + PAGE)}>
                {t('analysis.next')}
              </button>
            </p>
          )}
          <button type="button" onClick={() => downloadCsv(shown, metrics, compared, rows)}>
            {t('analysis.csv')}
          </button>
        </>
      )}
    </section>
  );
}

/** A dimension's value as shown: a channel in the reader's words, `(none)` for no value. */
function valueText(dimension: string, value: unknown, t: Translate): string {
  if (value == null) return t('analysis.none');
  if (dimension === 'channel' && CHANNELS.includes(String(value))) return t(`channel.${value}` as Key);
  return String(value);
}

const CHANNELS = ['mini_program_code', 'qr_code', 'shared_card', 'official_account', 'mini_program', 'search', 'ads', 'recents', 'other', 'direct'];

/** A metric's name: its own words, or a core event's measure with the event's name. */
function metricName(metric: string, t: Translate): string {
  const event = eventOf(metric);
  if (event == null) return t(`metric.${metric}` as Key);
  return t(`metric.event_${metric.slice(event.length + 1)}` as Key, { event });
}

/** Shares as percentages, money with two decimals, counts as whole numbers; `—` for none. */
function formatMetric(metric: string, value: unknown, number: Intl.NumberFormat): string {
  if (value == null) return '—';
  const n = Number(value);
  if (metric.endsWith('_rate') || metric.startsWith('retained_d')) return `${(n * 100).toFixed(1)}%`;
  if (metric.endsWith('_value')) return n.toFixed(2);
  return number.format(n);
}

/** The analyses a project starts with, in the reader's language until someone renames them. */
const DEFAULT_NAMES: Record<string, Key> = {
  'codes-past-7-days': 'saved.default.codes',
  'acquisition-past-7-days': 'saved.default.headline',
};

function savedName(analysis: Schemas['SavedAnalysis'], t: Translate): string {
  const words = DEFAULT_NAMES[analysis.id];
  return words && analysis.version === 1 ? t(words) : analysis.name;
}

/** Which users the analysis counts: everyone, new or returning ones, those who did (or did not)
 * a core event, or those whose first launch had a dimension's value. Applied together. */
function GroupForm({ group, t, onGroup }: { group: Group | null; t: Translate; onGroup: (g: Group | null) => void }) {
  const [kind, setKind] = useState<string>(group?.kind ?? '');
  const [event, setEvent] = useState(group && 'event' in group ? group.event : '');
  const [dimension, setDimension] = useState(group && 'dimension' in group ? group.dimension : 'utm_source');
  const [value, setValue] = useState(group && 'value' in group ? group.value : '');
  const chosen: Group | null | undefined =
    kind === '' ? null
    : kind === 'new' || kind === 'returning' ? { kind }
    : (kind === 'did' || kind === 'did_not') ? (EVENT_NAME.test(event) ? { kind, event } : undefined)
    : kind === 'first_touch' ? (value ? { kind, dimension, value } : undefined)
    : undefined;
  return (
    <span class="range">
      <label>
        {t('analysis.users')}{' '}
        <select value={kind} onChange={(e) => setKind(e.currentTarget.value)}>
          <option value="">{t('group.everyone')}</option>
          {GROUP_KINDS.map((k) => (
            <option key={k} value={k}>{t(`group.${k}` as Key)}</option>
          ))}
        </select>
      </label>
      {(kind === 'did' || kind === 'did_not') && (
        <label>
          {t('analysis.coreEvent')} <input value={event} placeholder="purchase" onInput={(e) => setEvent(e.currentTarget.value.trim())} />
        </label>
      )}
      {kind === 'first_touch' && (
        <>
          <select value={dimension} aria-label={t('group.dimension')} onChange={(e) => setDimension(e.currentTarget.value)}>
            {DIMENSIONS.filter((d) => !TIME_DIMENSIONS.includes(d) && d !== 'code').map((d) => (
              <option key={d} value={d}>{t(`dim.${d}` as Key)}</option>
            ))}
          </select>
          <label>
            {t('group.value')} <input value={value} onInput={(e) => setValue(e.currentTarget.value)} />
          </label>
        </>
      )}
      <button type="button" disabled={chosen === undefined} onClick={() => chosen !== undefined && onGroup(chosen)}>
        {t('group.apply')}
      </button>
    </span>
  );
}

/** A dimension in the reader's words (`code_id`, `props.<key>` as they are). */
function dimensionName(d: string, t: Translate): string {
  return (DIMENSIONS as readonly string[]).includes(d) ? t(`dim.${d}` as Key) : d;
}

/** A filter as a sentence: “Source is one of gzh, partner”. */
function filterText(name: string, condition: Condition, t: Translate): string {
  switch (condition.op) {
    case 'equals':
    case 'contains':
      return `${name} ${t(`filter.${condition.op}`)} ${condition.value}`;
    case 'in':
    case 'not_in':
      return `${name} ${t(`filter.${condition.op}`)} ${condition.values.join(', ')}`;
    case 'is_null':
      return `${name} ${t('filter.is_null')}`;
  }
}

/** Adds a filter on a dimension that has none yet: a value, several (separated by commas), a
 * part of one, or no value. */
function FilterForm({ t, taken, onAdd }: { t: Translate; taken: string[]; onAdd: (dimension: string, condition: Condition) => void }) {
  const dimensions = DIMENSIONS.filter((d) => !TIME_DIMENSIONS.includes(d) && !taken.includes(d));
  const [dimension, setDimension] = useState<string>('');
  const [op, setOp] = useState<Condition['op']>('equals');
  const [text, setText] = useState('');
  const chosen = dimensions.includes(dimension as (typeof DIMENSIONS)[number]) ? dimension : dimensions[0];
  const values = text.split(/[,，]/).map((v) => v.trim()).filter((v) => v !== '');
  const condition: Condition | null =
    op === 'is_null' ? { op }
    : op === 'in' || op === 'not_in' ? (values.length ? { op, values } : null)
    : text.trim() ? { op, value: text.trim() }
    : null;
  if (!chosen) return null;
  return (
    <form class="range" onSubmit={(e) => {
      e.preventDefault();
      if (condition) {
        onAdd(chosen, condition);
        setText('');
      }
    }}>
      <select value={chosen} aria-label={t('filter.dimension')} onChange={(e) => setDimension(e.currentTarget.value)}>
        {dimensions.map((d) => (
          <option key={d} value={d}>{t(`dim.${d}` as Key)}</option>
        ))}
      </select>
      <select value={op} aria-label={t('filter.op')} onChange={(e) => setOp(e.currentTarget.value as Condition['op'])}>
        {FILTER_OPS.map((o) => (
          <option key={o} value={o}>{t(`filter.${o}`)}</option>
        ))}
      </select>
      {op !== 'is_null' && (
        <input value={text} aria-label={t(op === 'in' || op === 'not_in' ? 'filter.values' : 'filter.value')} onInput={(e) => setText(e.currentTarget.value)} />
      )}
      <button type="submit" disabled={!condition}>{t('filter.add')}</button>
    </form>
  );
}

/** Adds a core event by its name, as the mini-program sends it (`track('purchase', …)`). */
function EventForm({ t, onAdd }: { t: Translate; onAdd: (event: string) => void }) {
  const [name, setName] = useState('');
  const valid = EVENT_NAME.test(name) && name !== 'launch';
  return (
    <form class="range" onSubmit={(e) => {
      e.preventDefault();
      if (valid) {
        onAdd(name);
        setName('');
      }
    }}>
      <label>
        {t('analysis.coreEvent')} <input value={name} placeholder="purchase" onInput={(e) => setName(e.currentTarget.value.trim())} />
      </label>
      <button type="submit" disabled={!valid}>{t('analysis.addEvent')}</button>
    </form>
  );
}

/** The project's saved analyses: open one, save this analysis (as a new one, or as a new
 * version of the one opened), rename or delete the one opened. */
function SavedBar({ api, project, spec, t, onSpec }: { api: Api; project: string; spec: Spec; t: Translate; onSpec: (s: Spec) => void }) {
  const base = `/v1/projects/${encodeURIComponent(project)}/analyses`;
  const [saved, setSaved] = useState<Schemas['SavedAnalysis'][]>([]);
  const [name, setName] = useState('');
  const [message, setMessage] = useState<string | null>(null);
  const [deleting, setDeleting] = useState(false);
  const reload = () =>
    api.send<Schemas['AnalysisList']>('GET', base).then(
      (list) => setSaved(list.analyses),
      (e) => setMessage(String(e instanceof Error ? e.message : e)),
    );
  useEffect(() => {
    reload();
  }, [project]);
  const current = saved.find((a) => a.id === spec.saved) ?? null;
  const act = (work: Promise<unknown>, done: string) =>
    work.then(
      () => {
        setMessage(done);
        setName('');
        return reload();
      },
      (e) => setMessage(String(e instanceof Error ? e.message : e)),
    );
  const request = toAnalysisSpec(spec);
  return (
    <div class="card saved">
      <label>
        {t('saved.open')}{' '}
        <select value={current?.id ?? ''} onChange={(e) => {
          const chosen = saved.find((a) => a.id === e.currentTarget.value);
          if (chosen) onSpec(fromSaved(chosen));
        }}>
          <option value="">—</option>
          {saved.map((a) => (
            <option key={a.id} value={a.id}>{savedName(a, t)}</option>
          ))}
        </select>
      </label>
      <label>
        {t('saved.name')} <input value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <button type="button" disabled={!name.trim()} onClick={() =>
        act(api.send<Schemas['SavedAnalysis']>('POST', base, { name: name.trim(), spec: request }).then((made) => onSpec({ ...spec, saved: made.id })), t('saved.saved'))
      }>{t('saved.saveAs')}</button>
      {current && (
        <>
          <button type="button" onClick={() => act(api.send('PATCH', `${base}/${current.id}`, { spec: request, version: current.version }), t('saved.updated', { name: savedName(current, t) }))}>
            {t('saved.update', { name: savedName(current, t) })}
          </button>
          <button type="button" disabled={!name.trim()} onClick={() => act(api.send('PATCH', `${base}/${current.id}`, { name: name.trim(), version: current.version }), t('saved.renamed'))}>
            {t('saved.rename')}
          </button>
          {deleting ? (
            <span class="confirm" role="alertdialog" aria-label={t('saved.deleteOf', { name: savedName(current, t) })}>
              {t('saved.deleteWhat')}{' '}
              <button type="button" class="danger" onClick={() => {
                setDeleting(false);
                act(api.send('DELETE', `${base}/${current.id}`).then(() => onSpec({ ...spec, saved: null })), t('saved.deleted'));
              }}>
                {t('saved.delete')}
              </button>{' '}
              <button type="button" onClick={() => setDeleting(false)}>{t('row.keep')}</button>
            </span>
          ) : (
            <button type="button" onClick={() => setDeleting(true)} aria-label={t('saved.deleteOf', { name: savedName(current, t) })}>{t('saved.delete')}</button>
          )}
        </>
      )}
      {message && <p role="status">{message}</p>}
    </div>
  );
}

/** From one day to another (whole days in the project's zone), applied together. */
function RangeForm({ spec, t, onSpec }: { spec: Spec; t: Translate; onSpec: (s: Spec) => void }) {
  const [from, setFrom] = useState(spec.from ?? '');
  const [to, setTo] = useState(spec.to ?? '');
  return (
    <span class="range">
      <label>
        {t('analysis.from')} <input type="date" value={from} onInput={(e) => setFrom(e.currentTarget.value)} />
      </label>
      <label>
        {t('analysis.to')} <input type="date" value={to} onInput={(e) => setTo(e.currentTarget.value)} />
      </label>
      <button type="button" disabled={!from || !to} onClick={() => onSpec({ ...spec, days: null, preset: null, from, to })}>
        {t('analysis.apply')}
      </button>
    </span>
  );
}

/** A chart drawn from `option()` (again when `rows` change), with what every chart of the page
 * shares; returns the element to draw it in. */
function useChart(option: () => Record<string, unknown>, rows: Row[]) {
  const element = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!element.current) return;
    const chart = echarts.init(element.current, undefined, { renderer: 'canvas' });
    // A user-timing mark when the chart is on the screen (what the console's bench measures);
    // without animation it comes within setOption, so it is listened for first.
    chart.on('finished', () => {
      performance.mark('promolens:chart-drawn');
    });
    chart.setOption({
      // Numbers at once: the chart is read, not watched.
      animation: false,
      // Drawn in the canvas: an HTML tooltip would need inline styles, which the page's CSP refuses.
      tooltip: { trigger: 'axis', renderMode: 'richText' },
      ...option(),
    });
    return () => chart.dispose();
  }, [rows]);
  return element;
}

function Chart({ rows, label, t }: { rows: Row[]; label: (r: Row) => string; t: Translate }) {
  const element = useChart(
    () => ({
      grid: { left: 8, right: 8, top: 24, bottom: 8, containLabel: true },
      xAxis: { type: 'category', data: rows.map(label), axisLabel: { interval: 0, rotate: rows.length > 6 ? 30 : 0 } },
      yAxis: { type: 'value', name: t('metric.new_users') },
      series: [{ type: 'bar', name: t('metric.new_users'), data: rows.map((r) => Number(r.new_users ?? 0)) }],
    }),
    rows,
  );
  return <div ref={element} class="chart" role="img" aria-label={t('analysis.chart')} />;
}

/** New users over time: one line per value of the second dimension (its five largest), or one
 * line when split by time only. */
function Lines({ rows, dims, t }: { rows: Row[]; dims: string[]; t: Translate }) {
  const element = useChart(() => {
    const [time, split] = dims;
    const lineOf = (r: Row) => String(split ? r[split] : '');
    const times = [...new Set(rows.map((r) => String(r[time])))].sort();
    const sums = (key: (r: Row) => string, kept: Row[]) => {
      const sum = new Map<string, number>();
      for (const r of kept) sum.set(key(r), (sum.get(key(r)) ?? 0) + Number(r.new_users ?? 0));
      return sum;
    };
    const lines = [...sums(lineOf, rows).entries()].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([name]) => name);
    const series = lines.map((name) => {
      const byTime = sums((r) => String(r[time]), rows.filter((r) => lineOf(r) === name));
      return { type: 'line', name: name || t('metric.new_users'), data: times.map((x) => byTime.get(x) ?? 0) };
    });
    return {
      legend: { top: 0 },
      grid: { left: 8, right: 8, top: 32, bottom: 8, containLabel: true },
      xAxis: { type: 'category', data: times },
      yAxis: { type: 'value', name: t('metric.new_users') },
      series,
    };
  }, rows);
  return <div ref={element} class="chart" role="img" aria-label={t('analysis.lines', { dim: t(`dim.${dims[0]}` as Key) })} />;
}

/** A relative change as people read it: `+3.2%`, `−40.0%`, `—` where there was nothing before. */
function change(value: unknown): string {
  if (value == null) return '—';
  const percent = Number(value) * 100;
  return `${percent > 0 ? '+' : percent < 0 ? '−' : ''}${Math.abs(percent).toFixed(1)}%`;
}

function downloadCsv(dims: string[], metrics: string[], compared: boolean, rows: Row[]) {
  const columns = [...dims, ...metrics.flatMap((m) => (compared ? [m, `${m}_previous`, `${m}_change`] : [m]))];
  const cell = (v: unknown) => {
    const text = v == null ? '' : String(v);
    return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  const csv = [columns.join(','), ...rows.map((r) => columns.map((c) => cell(r[c])).join(','))].join('\n') + '\n';
  saveBlob(new Blob([csv], { type: 'text/csv;charset=utf-8' }), 'acquisition.csv');
}
