// Project settings, for administrators: the keys (make one, shown once; revoke), the invitations
// (a one-time link, shown once; revoke), the attribution settings and the audit log of every
// change.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, type Api, type Schemas } from './api/client';
import { AttributionSettings } from './AttributionSettings';
import type { Key, Translate } from './i18n';

type Role = Schemas['Role'];
const ROLES: Role[] = ['analyst', 'marketer', 'admin', 'ingest'];
const EXPIRIES = ['', '30d', '90d', '365d'];

export function Settings({ api, project, ownKey, t, formatTime }: { api: Api; project: string; ownKey: string | undefined; t: Translate; formatTime: (iso: string) => string }) {
  const base = `/v1/projects/${encodeURIComponent(project)}`;
  const [state, setState] = useState<{ keys: Schemas['KeyRecord'][]; invitations: Schemas['Invitation'][]; audit: Schemas['AuditRecord'][] } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loads, setLoads] = useState(0);
  const reload = () => setLoads(loads + 1);
  useEffect(() => {
    Promise.all([
      api.get<Schemas['KeyList']>(`${base}/keys`),
      api.get<Schemas['InvitationList']>(`${base}/invitations`),
      api.get<Schemas['AuditAnswer']>(`${base}/audit?limit=50`),
    ]).then(
      ([keys, invitations, audit]) => setState({ keys: keys.keys, invitations: invitations.invitations, audit: audit.records }),
      (e) => setError(t('error.load', { message: e instanceof Error ? e.message : String(e) })),
    );
  }, [api, loads]);
  if (error) return <p class="error" role="alert">{error}</p>;
  if (!state) return <p aria-busy="true">{t('loading')}</p>;
  const status = (item: { revoked_at?: string | null; expires_at?: string | null; used_at?: string | null }) =>
    item.revoked_at
      ? t('settings.revoked', { when: formatTime(item.revoked_at) })
      : item.used_at
        ? t('settings.used', { when: formatTime(item.used_at) })
        : item.expires_at && Date.parse(item.expires_at) < Date.now()
          ? t('settings.expired')
          : t('settings.active');
  return (
    <section class="settings">
      <h1>{t('settings.title')}</h1>
      <h2 id="keys-title">{t('settings.keys')}</h2>
      <p class="hint">{t('settings.keysWhat')}</p>
      <Make
        t={t}
        kind="key"
        onMake={async (role, label, expiresIn) => {
          const made = await api.send<Schemas['KeyCreated']>('POST', `${base}/keys`, { role, label: label || null, expires_in: expiresIn || null });
          reload();
          return made.token;
        }}
      />
      <div class="scroll">
        <table aria-labelledby="keys-title">
          <thead>
            <tr>
              <th scope="col">{t('settings.label')}</th>
              <th scope="col">{t('settings.role')}</th>
              <th scope="col">{t('settings.created')}</th>
              <th scope="col">{t('settings.lastUsed')}</th>
              <th scope="col">{t('settings.expires')}</th>
              <th scope="col">{t('settings.state')}</th>
              <th scope="col">{t('codes.actions')}</th>
            </tr>
          </thead>
          <tbody>
            {state.keys.map((key) => (
              <tr key={key.id}>
                <td>
                  {key.label ?? key.id}
                  {key.id === ownKey && <span class="chip"> {t('settings.yours')}</span>}
                </td>
                <td>{t(`role.${key.role}` as Key)}</td>
                <td>{formatTime(key.created_at)}</td>
                <td>{key.last_used_at ? formatTime(key.last_used_at) : '—'}</td>
                <td>{key.expires_at ? formatTime(key.expires_at) : t('settings.never')}</td>
                <td>{status(key)}</td>
                <td>{!key.revoked_at && <Revoke t={t} what={key.label ?? key.id} onRevoke={() => api.send('DELETE', `${base}/keys/${key.id}`).then(reload)} />}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>

      <h2 id="invitations-title">{t('settings.invitations')}</h2>
      <p class="hint">{t('settings.invitationsWhat')}</p>
      <Make
        t={t}
        kind="invitation"
        onMake={async (role, _label, expiresIn) => {
          const made = await api.send<Schemas['InvitationCreated']>('POST', `${base}/invitations`, { role, expires_in: expiresIn || null });
          reload();
          return `${location.origin}/#/accept/${made.token}`;
        }}
      />
      {state.invitations.length === 0 ? (
        <p>{t('settings.noInvitations')}</p>
      ) : (
        <div class="scroll">
          <table aria-labelledby="invitations-title">
            <thead>
              <tr>
                <th scope="col">{t('settings.role')}</th>
                <th scope="col">{t('settings.created')}</th>
                <th scope="col">{t('settings.expires')}</th>
                <th scope="col">{t('settings.state')}</th>
                <th scope="col">{t('codes.actions')}</th>
              </tr>
            </thead>
            <tbody>
              {state.invitations.map((invitation) => (
                <tr key={invitation.id}>
                  <td>{t(`role.${invitation.role}` as Key)}</td>
                  <td>{formatTime(invitation.created_at)}</td>
                  <td>{formatTime(invitation.expires_at)}</td>
                  <td>{status(invitation)}</td>
                  <td>
                    {!invitation.revoked_at && !invitation.used_at && (
                      <Revoke t={t} what={invitation.id} onRevoke={() => api.send('DELETE', `${base}/invitations/${invitation.id}`).then(reload)} />
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}

      <AttributionSettings api={api} project={project} t={t} formatTime={formatTime} keyName={(id) => state.keys.find((k) => k.id === id)?.label ?? id} onSaved={reload} />

      <h2 id="audit-title">{t('settings.audit')}</h2>
      <div class="scroll">
        <table aria-labelledby="audit-title">
          <thead>
            <tr>
              <th scope="col">{t('settings.time')}</th>
              <th scope="col">{t('settings.by')}</th>
              <th scope="col">{t('settings.action')}</th>
              <th scope="col">{t('settings.target')}</th>
              <th scope="col">{t('batch.outcome')}</th>
            </tr>
          </thead>
          <tbody>
            {state.audit.map((record, i) => (
              <tr key={i}>
                <td>{formatTime(record.time)}</td>
                <td>{state.keys.find((k) => k.id === record.key_id)?.label ?? record.key_id}</td>
                <td>
                  <code>{record.action}</code>
                </td>
                <td>{record.target}</td>
                <td class={record.outcome === 'failed' ? 'error' : ''}>{t(`settings.outcome.${record.outcome}`)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

/** Makes a key or an invitation and shows its token (or link) this once. */
function Make({ t, kind, onMake }: { t: Translate; kind: 'key' | 'invitation'; onMake: (role: Role, label: string, expiresIn: string) => Promise<string> }) {
  const [role, setRole] = useState<Role>('analyst');
  const [label, setLabel] = useState('');
  const [expiresIn, setExpiresIn] = useState(kind === 'key' ? '' : '7d');
  const [shown, setShown] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const submit = async (event: Event) => {
    event.preventDefault();
    setError(null);
    try {
      setShown(await onMake(role, label.trim(), expiresIn));
      setLabel('');
    } catch (e) {
      setError(e instanceof ApiError || e instanceof Error ? e.message : String(e));
    }
  };
  const id = `make-${kind}`;
  const expiries = kind === 'key' ? EXPIRIES : ['1d', '7d', '30d'];
  return (
    <form class="make" onSubmit={submit}>
      <label for={`${id}-role`}>{t('settings.role')}</label>
      <select id={`${id}-role`} value={role} onChange={(e) => setRole(e.currentTarget.value as Role)}>
        {ROLES.filter((r) => kind === 'key' || r !== 'ingest').map((r) => (
          <option key={r} value={r}>
            {t(`role.${r}` as Key)}
          </option>
        ))}
      </select>
      {kind === 'key' && (
        <>
          <label for={`${id}-label`}>{t('settings.label')}</label>
          <input id={`${id}-label`} value={label} onInput={(e) => setLabel(e.currentTarget.value)} maxLength={100} />
        </>
      )}
      <label for={`${id}-expires`}>{t('settings.expiresIn')}</label>
      <select id={`${id}-expires`} value={expiresIn} onChange={(e) => setExpiresIn(e.currentTarget.value)}>
        {expiries.map((value) => (
          <option key={value} value={value}>
            {value ? t('settings.days', { n: parseInt(value, 10) }) : t('settings.never')}
          </option>
        ))}
      </select>
      <button type="submit">{t(kind === 'key' ? 'settings.makeKey' : 'settings.makeInvitation')}</button>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {shown && (
        <div class="shown-once">
          <label for={`${id}-shown`}>{t(kind === 'key' ? 'settings.keyShown' : 'settings.linkShown')}</label>
          <input id={`${id}-shown`} readOnly value={shown} onFocus={(e) => e.currentTarget.select()} />
        </div>
      )}
    </form>
  );
}

function Revoke({ t, what, onRevoke }: { t: Translate; what: string; onRevoke: () => Promise<unknown> }) {
  const [asking, setAsking] = useState(false);
  if (!asking) {
    return (
      <button type="button" onClick={() => setAsking(true)} aria-label={t('settings.revokeOf', { name: what })}>
        {t('settings.revoke')}
      </button>
    );
  }
  return (
    <span class="confirm" role="alertdialog" aria-label={t('settings.revokeOf', { name: what })}>
      {t('settings.revokeWhat')}{' '}
      <button type="button" class="danger" onClick={onRevoke}>
        {t('settings.revoke')}
      </button>{' '}
      <button type="button" onClick={() => setAsking(false)}>
        {t('row.keep')}
      </button>
    </span>
  );
}
