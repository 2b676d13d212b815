// A project's attribution settings, for administrators (DESIGN.md "Attribution settings"):
// channel rules, parameter aliases, normalisation and the multi-touch lookback window. A save
// makes a new version edited from the one shown; if someone saved in between, the server refuses
// (409) and the page says so. Below, every version.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, type Api, type Schemas } from './api/client';
import type { Key, Translate } from './i18n';

type Settings = Schemas['AttributionSettings'];
type Version = Schemas['SettingsVersion'];
const FIELDS = ['utm_source', 'utm_medium', 'utm_campaign', 'utm_content', 'utm_term'] as const;
type Field = (typeof FIELDS)[number];

/** The form as typed: lists comma-separated, a value map one `spelling = value` per line. */
type Draft = {
  lookback: string;
  rules: { channel: string; scene: string; utm_medium: string; utm_source: string }[];
  aliases: Record<Field, string>;
  normalize: Record<Field, { trim: boolean; lowercase: boolean; values: string }>;
};

const list = (values: readonly (string | number)[] | undefined) => (values ?? []).join(', ');
const items = (text: string) =>
  text
    .split(/[,，]/)
    .map((item) => item.trim())
    .filter((item) => item !== '');

function draftOf(settings: Settings): Draft {
  const byField = <T,>(of: (field: Field) => T) => Object.fromEntries(FIELDS.map((f) => [f, of(f)])) as Record<Field, T>;
  return {
    lookback: String(settings.lookback_days ?? 30),
    rules: (settings.channel_rules ?? []).map((rule) => ({
      channel: rule.channel,
      scene: list(rule.scene),
      utm_medium: list(rule.utm_medium),
      utm_source: list(rule.utm_source),
    })),
    aliases: byField((f) => list(settings.aliases?.[f])),
    normalize: byField((f) => {
      const n = settings.normalize?.[f];
      return {
        trim: n?.trim ?? false,
        lowercase: n?.lowercase ?? false,
        values: Object.entries(n?.values ?? {})
          .map(([from, to]) => `${from} = ${to}`)
          .join('\n'),
      };
    }),
  };
}

/** The settings a draft says, or what in it cannot be read (the server checks the rest). */
function settingsOf(draft: Draft, t: Translate): Settings | string {
  const aliases: Record<string, string[]> = {};
  const normalize: Settings['normalize'] = {};
  for (const field of FIELDS) {
    if (items(draft.aliases[field]).length) aliases[field] = items(draft.aliases[field]);
    const n = draft.normalize[field];
    const values: Record<string, string> = {};
    for (const line of n.values.split('\n').filter((l) => l.trim())) {
      const at = line.indexOf('=');
      if (at < 0) return t('attribution.badLine', { field: t(`dim.${field}` as Key), line: line.trim() });
      values[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    if (n.trim || n.lowercase || Object.keys(values).length) normalize[field] = { trim: n.trim, lowercase: n.lowercase, values };
  }
  const channel_rules: Schemas['ChannelRule'][] = [];
  for (const [i, rule] of draft.rules.entries()) {
    const scene = items(rule.scene).map(Number);
    if (scene.some((s) => !Number.isInteger(s))) return t('attribution.badScene', { n: i + 1, scene: rule.scene });
    channel_rules.push({ channel: rule.channel.trim(), scene, utm_medium: items(rule.utm_medium), utm_source: items(rule.utm_source) });
  }
  const lookback_days = Number(draft.lookback);
  if (!Number.isInteger(lookback_days)) return t('attribution.badLookback', { value: draft.lookback });
  return { lookback_days, aliases, normalize, channel_rules };
}

/** The settings form and history; `onSaved` after a save (the page's audit log has a new record). */
export function AttributionSettings({ api, project, t, formatTime, keyName, onSaved }: { api: Api; project: string; t: Translate; formatTime: (iso: string) => string; keyName: (id: string) => string; onSaved: () => void }) {
  const base = `/v1/projects/${encodeURIComponent(project)}/settings`;
  const [versions, setVersions] = useState<Version[] | null>(null);
  const [draft, setDraft] = useState<Draft | null>(null);
  const [message, setMessage] = useState<{ error: boolean; text: string; stale?: boolean } | null>(null);
  const [loads, setLoads] = useState(0);
  useEffect(() => {
    api.get<Schemas['SettingsHistory']>(`${base}/versions`).then(
      (history) => {
        setVersions(history.versions);
        setDraft(draftOf(history.versions[history.versions.length - 1].settings));
      },
      (e) => setMessage({ error: true, text: t('error.load', { message: e instanceof Error ? e.message : String(e) }) }),
    );
  }, [api, loads]);
  if (!versions || !draft) return message ? <p class="error" role="alert">{message.text}</p> : <p aria-busy="true">{t('loading')}</p>;
  const current = versions[versions.length - 1];
  const edit = (change: (d: Draft) => void) => {
    const next = structuredClone(draft);
    change(next);
    setDraft(next);
  };
  const save = async (event: Event) => {
    event.preventDefault();
    const settings = settingsOf(draft, t);
    if (typeof settings === 'string') return setMessage({ error: true, text: settings });
    try {
      const saved = await api.send<Version>('PUT', base, { version: current.version, settings });
      setMessage({ error: false, text: t('attribution.saved', { n: saved.version }) });
      setLoads(loads + 1);
      onSaved();
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) setMessage({ error: true, stale: true, text: t('attribution.stale', { n: current.version }) });
      else setMessage({ error: true, text: e instanceof Error ? e.message : String(e) });
    }
  };
  const moved = (i: number, by: number) =>
    edit((d) => {
      const [rule] = d.rules.splice(i, 1);
      d.rules.splice(i + by, 0, rule);
    });
  return (
    <>
      <h2 id="attribution-title">{t('attribution.title')}</h2>
      <p class="hint">
        {current.version === 0
          ? t('attribution.defaults')
          : t('attribution.version', { n: current.version, when: formatTime(current.created_at!), by: current.updated_by ? keyName(current.updated_by) : t('attribution.operator') })}
      </p>
      <form class="attribution" aria-labelledby="attribution-title" onSubmit={save}>
        <fieldset>
          <legend id="rules-title">{t('attribution.rules')}</legend>
          <p class="hint">{t('attribution.rulesWhat')}</p>
          {draft.rules.length > 0 && (
            <div class="scroll">
              <table aria-labelledby="rules-title">
                <thead>
                  <tr>
                    <th scope="col">{t('dim.channel')}</th>
                    <th scope="col">{t('attribution.scenes')}</th>
                    <th scope="col">utm_medium</th>
                    <th scope="col">utm_source</th>
                    <th scope="col">{t('codes.actions')}</th>
                  </tr>
                </thead>
                <tbody>
                  {draft.rules.map((rule, i) => (
                    <tr key={i}>
                      {(['channel', 'scene', 'utm_medium', 'utm_source'] as const).map((part) => (
                        <td key={part}>
                          <input
                            aria-label={t('attribution.ruleCell', { n: i + 1, part: part === 'channel' ? t('dim.channel') : part === 'scene' ? t('attribution.scenes') : part })}
                            value={rule[part]}
                            required={part === 'channel'}
                            onInput={(e) => edit((d) => (d.rules[i][part] = e.currentTarget.value))}
                          />
                        </td>
                      ))}
                      <td class="row-actions">
                        <button type="button" disabled={i === 0} onClick={() => moved(i, -1)} aria-label={t('attribution.up', { n: i + 1 })}>
                          ↑
                        </button>
                        <button type="button" disabled={i === draft.rules.length - 1} onClick={() => moved(i, 1)} aria-label={t('attribution.down', { n: i + 1 })}>
                          ↓
                        </button>
                        <button type="button" onClick={() => edit((d) => d.rules.splice(i, 1))} aria-label={t('attribution.remove', { n: i + 1 })}>
                          ✕
                        </button>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          <button type="button" onClick={() => edit((d) => d.rules.push({ channel: '', scene: '', utm_medium: '', utm_source: '' }))}>
            {t('attribution.addRule')}
          </button>
        </fieldset>
        <fieldset>
          <legend>{t('attribution.aliases')}</legend>
          <p class="hint">{t('attribution.aliasesWhat')}</p>
          <div class="field-grid">
            {FIELDS.map((field) => (
              <label key={field}>
                {t('attribution.aliasesOf', { field: t(`dim.${field}` as Key), key: field })}
                <input value={draft.aliases[field]} placeholder={field} onInput={(e) => edit((d) => (d.aliases[field] = e.currentTarget.value))} />
              </label>
            ))}
          </div>
        </fieldset>
        <fieldset>
          <legend id="normalize-title">{t('attribution.normalize')}</legend>
          <p class="hint">{t('attribution.normalizeWhat')}</p>
          <div class="scroll">
            <table aria-labelledby="normalize-title">
              <thead>
                <tr>
                  <th scope="col">{t('attribution.field')}</th>
                  <th scope="col">{t('attribution.trim')}</th>
                  <th scope="col">{t('attribution.lowercase')}</th>
                  <th scope="col">{t('attribution.merge')}</th>
                </tr>
              </thead>
              <tbody>
                {FIELDS.map((field) => {
                  const name = t(`dim.${field}` as Key);
                  return (
                    <tr key={field}>
                      <th scope="row">{name}</th>
                      <td>
                        <input type="checkbox" aria-label={`${t('attribution.trim')}: ${name}`} checked={draft.normalize[field].trim} onChange={(e) => edit((d) => (d.normalize[field].trim = e.currentTarget.checked))} />
                      </td>
                      <td>
                        <input type="checkbox" aria-label={`${t('attribution.lowercase')}: ${name}`} checked={draft.normalize[field].lowercase} onChange={(e) => edit((d) => (d.normalize[field].lowercase = e.currentTarget.checked))} />
                      </td>
                      <td>
                        <textarea aria-label={`${t('attribution.merge')}: ${name}`} rows={2} placeholder="WeChat = wechat" value={draft.normalize[field].values} onInput={(e) => edit((d) => (d.normalize[field].values = e.currentTarget.value))} />
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        </fieldset>
        <label>
          {t('attribution.lookback')} <input type="number" min={1} max={365} value={draft.lookback} onInput={(e) => edit((d) => (d.lookback = e.currentTarget.value))} />
        </label>
        <p class="hint">{t('attribution.when', { project })}</p>
        <div class="actions">
          <button type="submit">{t('attribution.save', { n: current.version + 1 })}</button>
          <button type="button" onClick={() => (setMessage(null), setDraft(draftOf(current.settings)))}>
            {t('attribution.undo')}
          </button>
        </div>
        {message && (
          <p class={message.error ? 'error' : 'done'} role={message.error ? 'alert' : 'status'}>
            {message.text}{' '}
            {message.stale && (
              <button type="button" onClick={() => (setMessage(null), setLoads(loads + 1))}>
                {t('attribution.reload')}
              </button>
            )}
          </p>
        )}
      </form>
      <h3 id="history-title">{t('attribution.history')}</h3>
      <div class="scroll">
        <table aria-labelledby="history-title">
          <thead>
            <tr>
              <th scope="col">{t('attribution.versionCol')}</th>
              <th scope="col">{t('settings.time')}</th>
              <th scope="col">{t('settings.by')}</th>
              <th scope="col">{t('attribution.content')}</th>
            </tr>
          </thead>
          <tbody>
            {[...versions].reverse().map((v) => (
              <tr key={v.version}>
                <td>{v.version}</td>
                <td>{v.created_at ? formatTime(v.created_at) : '—'}</td>
                <td>{v.version === 0 ? '—' : v.updated_by ? keyName(v.updated_by) : t('attribution.operator')}</td>
                <td>
                  <details>
                    <summary>
                      {t('attribution.summary', {
                        rules: v.settings.channel_rules?.length ?? 0,
                        aliases: Object.keys(v.settings.aliases ?? {}).length,
                        normalized: Object.keys(v.settings.normalize ?? {}).length,
                        days: v.settings.lookback_days ?? 30,
                      })}
                    </summary>
                    <pre>{JSON.stringify(v.settings, null, 2)}</pre>
                  </details>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
