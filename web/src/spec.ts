// What an analysis is, as its URL holds it (#/analysis?by=…&days=…|from=…&to=…|preset=…&f.<dim>=…),
// and as the API runs it (an AnalysisSpec for `analyses:run`). Dimensions and metrics are data: a
// new one is a line here (and its words in i18n.ts).
import type { Schemas } from './api/client';

export const DIMENSIONS = ['utm_source', 'utm_medium', 'utm_campaign', 'utm_content', 'utm_term', 'code', 'code_kind', 'scene', 'path', 'day', 'week', 'month'] as const;
export const TIME_DIMENSIONS: readonly string[] = ['day', 'week', 'month'];
export const METRICS = ['new_users', 'users', 'launches'] as const;
export const PRESETS: Schemas['Preset'][] = ['today', 'yesterday', 'this_week', 'last_week', 'this_month', 'last_month', 'past_7_days', 'past_30_days', 'past_90_days'];

/** What the URL holds. A filter's empty value means "no value". */
export type Spec = {
  by: string[];
  days: number | null;
  from: string | null;
  to: string | null;
  preset: Schemas['Preset'] | null;
  filters: Record<string, string>;
  /** Beside the previous period of as many days. */
  compare: boolean;
};

export function parseSpec(query: string): Spec {
  const params = new URLSearchParams(query);
  const by = (params.get('by') ?? 'utm_source').split(',').filter((d) => (DIMENSIONS as readonly string[]).includes(d));
  const filters: Record<string, string> = {};
  for (const [key, value] of params) if (key.startsWith('f.')) filters[key.slice(2)] = value;
  const from = params.get('from');
  const to = params.get('to');
  const preset = PRESETS.find((p) => p === params.get('preset')) ?? null;
  const days = (from && to) || preset ? null : Number(params.get('days') ?? 7) || 7;
  return { by: by.length ? by : ['utm_source'], days, from, to, preset, filters, compare: params.get('compare') === '1' };
}

export function specQuery(spec: Spec): string {
  const params = new URLSearchParams();
  params.set('by', spec.by.join(','));
  if (spec.preset) params.set('preset', spec.preset);
  else if (spec.days != null) params.set('days', String(spec.days));
  else if (spec.from && spec.to) {
    params.set('from', spec.from);
    params.set('to', spec.to);
  }
  for (const [key, value] of Object.entries(spec.filters)) params.set(`f.${key}`, value);
  if (spec.compare) params.set('compare', '1');
  return params.toString();
}

/** The spec the API runs for what the URL holds. */
export function toAnalysisSpec(spec: Spec): Schemas['AnalysisSpec'] {
  const range: Schemas['Range'] = spec.preset ? { preset: spec.preset } : spec.from && spec.to ? { from: spec.from, to: spec.to } : { past_days: spec.days ?? 7 };
  const filters: Schemas['Filter'][] = Object.entries(spec.filters).map(([dimension, value]) =>
    value === '' ? { dimension, op: 'is_null' } : { dimension, op: 'equals', value },
  );
  return { metrics: [...METRICS], dimensions: spec.by, filters, range, compare: spec.compare && comparable(spec) };
}

/** Whether the analysis can be compared with the previous period (not when split by time). */
export function comparable(spec: Spec): boolean {
  return !spec.by.some((d) => TIME_DIMENSIONS.includes(d));
}

/** What the URL holds for a drill-down the API answered (its dimensions and equality filters),
 * the range kept. */
export function fromAnalysisSpec(drill: Schemas['AnalysisSpec'], base: Spec): Spec {
  const filters: Record<string, string> = {};
  for (const filter of drill.filters ?? []) {
    if (filter.op === 'equals') filters[filter.dimension] = filter.value;
    else if (filter.op === 'is_null') filters[filter.dimension] = '';
  }
  return { ...base, by: drill.dimensions ?? base.by, filters };
}
