// The authorize step (the reference product's first): an administrator registers the
// mini-program's AppID and AppSecret, or, not holding them, invites the person who does with a
// one-time link. Other roles are told who can do it.
import { useState } from 'preact/hooks';
import { Api, ApiError, type Schemas } from './api/client';
import type { Translate } from './i18n';

export function Authorize({ api, project, isAdmin, t, onAuthorized }: { api: Api; project: string; isAdmin: boolean; t: Translate; onAuthorized: () => void }) {
  const [appId, setAppId] = useState('');
  const [secret, setSecret] = useState('');
  const [error, setError] = useState<{ message: string; field?: string | null } | null>(null);
  const [link, setLink] = useState<string | null>(null);
  const base = `/v1/projects/${encodeURIComponent(project)}`;
  if (!isAdmin) {
    // Only an administrator may invite (an invitation can make an administrator): others get a
    // message to send to theirs, with the link to the console.
    return (
      <div class="card authorize">
        <p>{t('codes.notAuthorized')}</p>
        <p>{t('auth.askAdmin')}</p>
        <label for="ask-admin">{t('auth.askAdminLabel')}</label>
        <textarea id="ask-admin" readOnly rows={3} value={t('auth.askAdminMessage', { project, link: `${location.origin}/` })} onFocus={(e) => e.currentTarget.select()} />
      </div>
    );
  }
  const authorize = async (event: Event) => {
    event.preventDefault();
    setError(null);
    try {
      await api.send('PUT', `${base}/authorization`, { app_id: appId.trim(), secret: secret.trim() });
      onAuthorized();
    } catch (e) {
      if (e instanceof ApiError && e.detail.code === 'invalid_credentials') {
        setError({ message: t(e.detail.field === 'app_id' ? 'auth.badAppId' : 'auth.badSecret'), field: e.detail.field });
      } else {
        setError({ message: e instanceof Error ? e.message : String(e) });
      }
    }
  };
  const invite = async () => {
    try {
      const made = await api.send<Schemas['InvitationCreated']>('POST', `${base}/invitations`, { role: 'admin' });
      setLink(`${location.origin}/#/accept/${made.token}`);
    } catch (e) {
      setError({ message: e instanceof Error ? e.message : String(e) });
    }
  };
  return (
    <form class="card authorize" onSubmit={authorize} aria-labelledby="authorize-title">
      <h2 id="authorize-title">{t('auth.title')}</h2>
      <p>{t('codes.notAuthorized')}</p>
      <label for="app-id">{t('auth.appId')}</label>
      <input id="app-id" value={appId} onInput={(e) => setAppId(e.currentTarget.value)} required aria-invalid={error?.field === 'app_id'} />
      <label for="app-secret">{t('auth.secret')}</label>
      <input id="app-secret" type="password" autocomplete="off" value={secret} onInput={(e) => setSecret(e.currentTarget.value)} required aria-invalid={error?.field === 'secret'} />
      <p class="hint">{t('auth.secretHint')}</p>
      {error && (
        <p class="error" role="alert">
          {error.message}
        </p>
      )}
      <div class="actions">
        <button type="submit">{t('auth.submit')}</button>
        <button type="button" onClick={invite}>
          {t('auth.invite')}
        </button>
      </div>
      {link && (
        <div class="invitation">
          <p>{t('auth.inviteLink')}</p>
          <input readOnly value={link} aria-label={t('auth.inviteLinkLabel')} onFocus={(e) => e.currentTarget.select()} />
        </div>
      )}
    </form>
  );
}

/** The page an invitation link opens: exchanges its token for a key of one's own. */
export function AcceptInvitation({ token, t, onKey }: { token: string; t: Translate; onKey: (key: string) => void }) {
  const [label, setLabel] = useState('');
  const [key, setKey] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const accept = async (event: Event) => {
    event.preventDefault();
    const response = await fetch('/v1/invitations:accept', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(label ? { token, label } : { token }),
    });
    const answer = await response.json();
    if (response.ok) setKey(answer.token);
    else setError(t('accept.refused', { message: answer.error?.message ?? response.status }));
  };
  if (key) {
    return (
      <div class="card">
        <h1>{t('accept.title')}</h1>
        <p>{t('accept.yourKey')}</p>
        <input readOnly value={key} aria-label={t('signIn.key')} onFocus={(e) => e.currentTarget.select()} />
        <button type="button" onClick={() => onKey(key)}>
          {t('accept.continue')}
        </button>
      </div>
    );
  }
  return (
    <form class="card sign-in" onSubmit={accept}>
      <h1>{t('accept.title')}</h1>
      <p>{t('accept.what')}</p>
      <label for="invitee">{t('accept.label')}</label>
      <input id="invitee" value={label} onInput={(e) => setLabel(e.currentTarget.value)} maxLength={100} />
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <button type="submit">{t('accept.submit')}</button>
    </form>
  );
}
