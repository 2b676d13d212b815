// What an analysis is, as its URL holds it (#/analysis?by=…&days=…|from=…&to=…|preset=…&f.<dim>=…,
// f.<dim>.in=…&f.<dim>.in=…, f.<dim>.not_in=…, f.<dim>.contains=…),
// and as the API runs it (an AnalysisSpec for `analyses:run`). Dimensions and metrics are data: a
// new one is a line here (and its words in i18n.ts).
import type { Schemas } from './api/client';

export const DIMENSIONS = ['channel', 'utm_source', 'utm_medium', 'utm_campaign', 'utm_content', 'utm_term', 'code', 'code_kind', 'scene', 'path', 'day', 'week', 'month'] as const;
export const TIME_DIMENSIONS: readonly string[] = ['day', 'week', 'month'];
/** Metrics of launches (a core event's come from its name: `<event>_users`, …). */
export const METRICS = ['new_users', 'users', 'launches', 'returning_users', 'retained_d1', 'retained_d7', 'retained_d30'] as const;
export const DEFAULT_METRICS: string[] = ['new_users', 'users', 'launches'];
/** What adding a core event shows of it. */
export const EVENT_MEASURES = ['users', 'rate', 'value'] as const;
const EVENT_METRIC = /^([A-Za-z][A-Za-z0-9_.-]{0,63})_(users|count|value|rate)$/;
/** A core event's name as the server takes it. */
export const EVENT_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
export const PRESETS: Schemas['Preset'][] = ['today', 'yesterday', 'this_week', 'last_week', 'this_month', 'last_month', 'past_7_days', 'past_30_days', 'past_90_days'];

export const MODELS: Schemas['Model'][] = ['first_touch', 'last_touch', 'last_non_direct', 'linear', 'position_based'];
/** The user groups the page offers (a group given by SQL is for the API). */
export const GROUP_KINDS = ['new', 'returning', 'did', 'did_not', 'first_touch'] as const;
export type Group = Exclude<Schemas['UserGroup'], { kind: 'sql' }>;

/** A filter's condition, as the API takes it: equals, in, not in, contains, is null. */
export type Condition = Schemas['Condition'];
export const FILTER_OPS: Condition['op'][] = ['equals', 'in', 'not_in', 'contains', 'is_null'];

/** What the URL holds. */
export type Spec = {
  metrics: string[];
  /** Only these users (`g=new`, `g=did:purchase`, `g=first_touch:utm_source:gzh`). */
  group: Group | null;
  /** How core events are credited (`model=linear&lookback=30`). */
  model: Schemas['Model'];
  lookback: number;
  by: string[];
  days: number | null;
  from: string | null;
  to: string | null;
  preset: Schemas['Preset'] | null;
  /** At most one condition per dimension. */
  filters: Record<string, Condition>;
  /** Beside the previous period of as many days. */
  compare: boolean;
  /** The saved analysis this is (or was opened from). */
  saved: string | null;
};

/** Whether `metric` is one the API computes. */
export function isMetric(metric: string): boolean {
  return (METRICS as readonly string[]).includes(metric) || (EVENT_METRIC.test(metric) && !metric.startsWith('launch_'));
}

/** The core event a metric is of, if it is one. */
export function eventOf(metric: string): string | null {
  if ((METRICS as readonly string[]).includes(metric)) return null;
  return EVENT_METRIC.exec(metric)?.[1] ?? null;
}

/** The core events the metrics name, in order. */
export function eventsOf(metrics: string[]): string[] {
  return [...new Set(metrics.map(eventOf).filter((e): e is string => e != null))];
}

export function parseSpec(query: string): Spec {
  const params = new URLSearchParams(query);
  const by = (params.get('by') ?? 'utm_source').split(',').filter((d) => (DIMENSIONS as readonly string[]).includes(d));
  const filters = parseFilters(params);
  const from = params.get('from');
  const to = params.get('to');
  const preset = PRESETS.find((p) => p === params.get('preset')) ?? null;
  const days = (from && to) || preset ? null : Number(params.get('days') ?? 7) || 7;
  const metrics = (params.get('m') ?? '').split(',').filter(isMetric);
  const model = MODELS.find((m) => m === params.get('model')) ?? 'first_touch';
  const lookback = Math.min(365, Math.max(1, Number(params.get('lookback') ?? 30) || 30));
  return {
    metrics: metrics.length ? metrics : DEFAULT_METRICS,
    group: parseGroup(params.get('g')),
    model,
    lookback,
    by: by.length ? by : ['utm_source'],
    days,
    from,
    to,
    preset,
    filters,
    compare: params.get('compare') === '1',
    saved: params.get('saved'),
  };
}

export function specQuery(spec: Spec): string {
  const params = new URLSearchParams();
  if (spec.saved) params.set('saved', spec.saved);
  if (spec.metrics.join(',') !== DEFAULT_METRICS.join(',')) params.set('m', spec.metrics.join(','));
  if (spec.group) params.set('g', groupText(spec.group));
  if (spec.model !== 'first_touch') {
    params.set('model', spec.model);
    params.set('lookback', String(spec.lookback));
  }
  params.set('by', spec.by.join(','));
  if (spec.preset) params.set('preset', spec.preset);
  else if (spec.days != null) params.set('days', String(spec.days));
  else if (spec.from && spec.to) {
    params.set('from', spec.from);
    params.set('to', spec.to);
  }
  for (const [dimension, condition] of Object.entries(spec.filters)) {
    // Equality (and no value, as an empty one) keeps the short form drill-down links have.
    if (condition.op === 'equals') params.append(`f.${dimension}`, condition.value);
    else if (condition.op === 'is_null') params.append(`f.${dimension}`, '');
    else if (condition.op === 'contains') params.append(`f.${dimension}.contains`, condition.value);
    else for (const value of condition.values) params.append(`f.${dimension}.${condition.op}`, value);
  }
  if (spec.compare) params.set('compare', '1');
  return params.toString();
}

/** The spec the API runs for what the URL holds. */
export function toAnalysisSpec(spec: Spec): Schemas['AnalysisSpec'] {
  const range: Schemas['Range'] = spec.preset ? { preset: spec.preset } : spec.from && spec.to ? { from: spec.from, to: spec.to } : { past_days: spec.days ?? 7 };
  const filters: Schemas['Filter'][] = Object.entries(spec.filters).map(([dimension, condition]) => ({ dimension, ...condition }));
  return {
    metrics: spec.metrics,
    dimensions: spec.by,
    filters,
    range,
    compare: spec.compare && comparable(spec),
    ...(spec.group ? { group: spec.group } : {}),
    ...(spec.model !== 'first_touch' ? { attribution: { model: spec.model, lookback_days: spec.lookback } } : {}),
  };
}

/** A group as the URL holds it. */
export function groupText(group: Group): string {
  switch (group.kind) {
    case 'did':
    case 'did_not':
      return `${group.kind}:${group.event}`;
    case 'first_touch':
      return `first_touch:${group.dimension}:${group.value}`;
    default:
      return group.kind;
  }
}

function parseGroup(text: string | null): Group | null {
  if (!text) return null;
  const [kind, ...rest] = text.split(':');
  if (kind === 'new' || kind === 'returning') return { kind };
  if ((kind === 'did' || kind === 'did_not') && EVENT_NAME.test(rest[0] ?? '')) return { kind, event: rest[0] };
  if (kind === 'first_touch' && rest.length >= 2 && (DIMENSIONS as readonly string[]).includes(rest[0])) {
    return { kind, dimension: rest[0], value: rest.slice(1).join(':') };
  }
  return null;
}

/** What the URL holds for a saved analysis. */
export function fromSaved(saved: Schemas['SavedAnalysis']): Spec {
  const { spec } = saved;
  const range = spec.range ?? {};
  const base: Spec = {
    metrics: (spec.metrics ?? DEFAULT_METRICS).filter(isMetric),
    group: spec.group && spec.group.kind !== 'sql' ? spec.group : null,
    model: spec.attribution?.model ?? 'first_touch',
    lookback: spec.attribution?.lookback_days ?? 30,
    by: spec.dimensions?.length ? spec.dimensions : ['utm_source'],
    days: range.preset || (range.from && range.to) ? null : (range.past_days ?? 7),
    from: range.from ?? null,
    to: range.to ?? null,
    preset: range.preset ?? null,
    filters: {},
    compare: spec.compare ?? false,
    saved: saved.id,
  };
  return fromAnalysisSpec(spec, base);
}

/** Whether the analysis can be compared with the previous period (not when split by time). */
export function comparable(spec: Spec): boolean {
  return !spec.by.some((d) => TIME_DIMENSIONS.includes(d));
}

/** What the URL holds for a drill-down the API answered (its dimensions and filters), the range
 * kept. */
export function fromAnalysisSpec(drill: Schemas['AnalysisSpec'], base: Spec): Spec {
  const filters: Record<string, Condition> = {};
  for (const { dimension, ...condition } of drill.filters ?? []) filters[dimension] = condition as Condition;
  return { ...base, by: drill.dimensions ?? base.by, filters };
}

/** The filters of a URL: `f.<dim>=v` (equals; empty: no value), `f.<dim>.<op>=v` (`in` and
 * `not_in` repeated, one value each). */
function parseFilters(params: URLSearchParams): Record<string, Condition> {
  const filters: Record<string, Condition> = {};
  for (const [key, value] of params) {
    if (!key.startsWith('f.')) continue;
    // The server checks the dimension (`code_id`, `props.<key>` and the page's own).
    const rest = key.slice(2);
    const dot = rest.lastIndexOf('.');
    const suffix = rest.slice(dot + 1);
    const [dimension, op] = dot > 0 && ['in', 'not_in', 'contains'].includes(suffix) ? [rest.slice(0, dot), suffix] : [rest, undefined];
    const earlier = filters[dimension];
    if (op === undefined) filters[dimension] = value === '' ? { op: 'is_null' } : { op: 'equals', value };
    else if (op === 'contains') filters[dimension] = { op, value };
    else if (op === 'in' || op === 'not_in') {
      const values = earlier?.op === op ? earlier.values : [];
      filters[dimension] = { op, values: [...values, value] };
    }
  }
  return filters;
}
