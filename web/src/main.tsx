// The promolens console: sign in with an API key, then acquisition management (获客管理).
import { render, type ComponentType } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { Api, ApiError, type Schemas } from './api/client';
import { initialLang, rememberLang, translate, type Key, type Lang, type Translate } from './i18n';
import type { AnalysisProps } from './Analysis';
import { parseSpec, specQuery, type Spec } from './spec';
import { AcceptInvitation, Authorize } from './Authorize';
import { BatchForm } from './Batch';
import { CodePanel } from './CodePanel';
import { CodeRow } from './CodeRow';
import { NewCodeForm } from './NewCode';
import { Settings } from './Settings';
import './style.css';

type Me = Schemas['Me'];
const KEY_STORAGE = 'promolens.key';

function App() {
  const [lang, setLang] = useState<Lang>(initialLang);
  const [session, setSession] = useState<{ api: Api; me: Me } | null>(null);
  const t: Translate = (key, values) => translate(lang, key, values);
  useEffect(() => rememberLang(lang), [lang]);
  useEffect(() => {
    const saved = sessionStorage.getItem(KEY_STORAGE);
    if (saved) signIn(saved).then(setSession, () => sessionStorage.removeItem(KEY_STORAGE));
  }, []);
  const route = useHashRoute();
  const invitation = location.hash.match(/^#\/accept\/(pli_[0-9a-f_]+)$/)?.[1];
  const useKey = (key: string) =>
    signIn(key).then((s) => {
      history.replaceState(null, '', '/');
      setSession(s);
    });
  const signOut = () => {
    sessionStorage.removeItem(KEY_STORAGE);
    setSession(null);
  };
  return (
    <>
      <header class="bar">
        <strong>{t('app.title')}</strong>
        {session && <span>{session.me.project.name} · {t(`role.${session.me.key?.role ?? 'ingest'}` as Key)}</span>}
        {session && (
          <nav class="nav">
            <a href="#/" aria-current={route.page === 'codes' ? 'page' : undefined}>
              {t('nav.codes')}
            </a>
            <a href="#/analysis?by=utm_source&days=7" aria-current={route.page === 'analysis' ? 'page' : undefined}>
              {t('nav.analysis')}
            </a>
            {session.me.key?.role === 'admin' && (
              <a href="#/settings" aria-current={route.page === 'settings' ? 'page' : undefined}>
                {t('nav.settings')}
              </a>
            )}
          </nav>
        )}
        <span class="spacer" />
        <button type="button" onClick={() => setLang(lang === 'zh' ? 'en' : 'zh')}>
          {t('lang.switch')}
        </button>
        {session && (
          <button type="button" onClick={signOut}>
            {t('nav.signOut')}
          </button>
        )}
      </header>
      <main>
        {session && route.page === 'analysis' ? (
          <LazyAnalysis
            api={session.api}
            project={session.me.project.name}
            spec={route.spec}
            t={t}
            lang={lang}
            onSpec={(spec: Spec) => (location.hash = `#/analysis?${specQuery(spec)}`)}
          />
        ) : session && route.page === 'settings' && session.me.key?.role === 'admin' ? (
          <Settings api={session.api} project={session.me.project.name} ownKey={session.me.key?.id} t={t} formatTime={(iso) => new Date(iso).toLocaleString(lang === 'zh' ? 'zh-CN' : 'en')} />
        ) : session ? (
          <Codes api={session.api} me={session.me} t={t} lang={lang} />
        ) : invitation ? (
          <AcceptInvitation token={invitation} t={t} onKey={useKey} />
        ) : (
          <SignIn t={t} onSignedIn={setSession} />
        )}
      </main>
    </>
  );
}

/** The analysis page, loaded when first opened: its charts are most of the script's weight, and
 * the codes list should not wait for them. */
function LazyAnalysis(props: AnalysisProps) {
  const [Page, setPage] = useState<ComponentType<AnalysisProps> | null>(null);
  useEffect(() => {
    import('./Analysis').then((module) => setPage(() => module.Analysis));
  }, []);
  return Page ? <Page {...props} /> : <p aria-busy="true">…</p>;
}

/** The page the URL's hash names: `#/analysis?…` (its spec), `#/settings`, else the codes. */
function useHashRoute(): { page: 'codes' | 'settings' } | { page: 'analysis'; spec: Spec } {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    addEventListener('hashchange', changed);
    return () => removeEventListener('hashchange', changed);
  }, []);
  const analysis = hash.match(/^#\/analysis\??(.*)$/);
  if (analysis) return { page: 'analysis', spec: parseSpec(analysis[1]) };
  return { page: hash === '#/settings' ? 'settings' : 'codes' };
}

/** Checks a key with `GET /v1/me` (an ingest key cannot open the console) and keeps it for the
 * tab's life. */
async function signIn(key: string): Promise<{ api: Api; me: Me }> {
  const api = new Api(key);
  const me = await api.get<Me>('/v1/me');
  if (me.key?.role === 'ingest') throw new ApiError(403, { code: 'ingest_key', message: '' });
  sessionStorage.setItem(KEY_STORAGE, key);
  return { api, me };
}

function SignIn({ t, onSignedIn }: { t: Translate; onSignedIn: (s: { api: Api; me: Me }) => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<string | null>(null);
  const submit = async (event: Event) => {
    event.preventDefault();
    setError(null);
    try {
      onSignedIn(await signIn(key.trim()));
    } catch (e) {
      if (e instanceof ApiError && e.detail.code === 'ingest_key') setError(t('signIn.ingestRefused'));
      else setError(t('signIn.bad', { message: e instanceof Error ? e.message : String(e) }));
    }
  };
  return (
    <form class="card sign-in" onSubmit={submit}>
      <h1>{t('signIn.title')}</h1>
      <label for="key">{t('signIn.key')}</label>
      <input id="key" type="password" autocomplete="off" value={key} onInput={(e) => setKey(e.currentTarget.value)} required />
      <p class="hint">{t('signIn.hint')}</p>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <button type="submit">{t('signIn.submit')}</button>
    </form>
  );
}

type CodeList = Schemas['CodeList'];
type AuthorizationAnswer = Schemas['AuthorizationAnswer'];

function Codes({ api, me, t, lang }: { api: Api; me: Me; t: Translate; lang: Lang }) {
  const [state, setState] = useState<{ codes: CodeList; authorization: AuthorizationAnswer } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [adding, setAdding] = useState<'code' | 'batch' | null>(null);
  const [opened, setOpened] = useState<string | null>(null);
  const [loads, setLoads] = useState(0);
  const [search, setSearch] = useState('');
  const [sort, setSort] = useState<{ by: SortKey; descending: boolean }>({ by: 'created', descending: true });
  const mayWrite = me.key?.role === 'admin' || me.key?.role === 'marketer';
  useEffect(() => {
    const project = encodeURIComponent(me.project.name);
    Promise.all([
      api.get<CodeList>(`/v1/projects/${project}/codes`),
      api.get<AuthorizationAnswer>(`/v1/projects/${project}/authorization`),
    ])
      .then(([codes, authorization]) => setState({ codes, authorization }))
      .catch((e) => setError(t('error.load', { message: e instanceof Error ? e.message : String(e) })));
  }, [api, loads]);
  if (error) {
    return (
      <div class="error" role="alert">
        <p>{error}</p>
        <button type="button" onClick={() => (setError(null), setLoads(loads + 1))}>
          {t('error.retry')}
        </button>
      </div>
    );
  }
  if (!state) return <p aria-busy="true">{t('loading')}</p>;
  const { codes, authorization } = state;
  const openedCode = codes.codes.find((code) => code.id === opened);
  const newUsers = codes.codes.reduce((sum, c) => sum + c.past_7_days.new_users, 0);
  const number = (n: number) => n.toLocaleString(lang === 'zh' ? 'zh-CN' : 'en');
  const created = (ms: number) => new Date(ms).toLocaleDateString(lang === 'zh' ? 'zh-CN' : 'en');
  return (
    <section>
      <h1>{t('nav.codes')}</h1>
      {authorization.authorization ? (
        <p>{t('codes.authorized', { appId: authorization.authorization.app_id })}</p>
      ) : (
        <Authorize api={api} project={me.project.name} isAdmin={me.key?.role === 'admin'} t={t} onAuthorized={() => setLoads(loads + 1)} />
      )}
      <p class="headline">
        <a href="#/analysis?by=code&days=7">{t('codes.headline', { n: newUsers })}</a>
      </p>
      <p>
        {t('codes.quota', { used: number(codes.quota.used), limit: number(codes.quota.limit) })}
        {codes.quota.warning && <span class="warning"> {t('codes.quotaWarning')}</span>}
      </p>
      <h2>{t('codes.title')}</h2>
      {mayWrite && authorization.authorization && !adding && (
        <div class="actions">
          <button type="button" onClick={() => setAdding('code')}>
            {t('new.open')}
          </button>
          <button type="button" onClick={() => setAdding('batch')}>
            {t('batch.open')}
          </button>
        </div>
      )}
      {adding === 'code' && (
        <NewCodeForm api={api} project={me.project.name} t={t} onMade={() => setLoads(loads + 1)} onClose={() => setAdding(null)} />
      )}
      {adding === 'batch' && (
        <BatchForm api={api} project={me.project.name} t={t} onMade={() => setLoads(loads + 1)} onClose={() => setAdding(null)} />
      )}
      {openedCode && (
        <CodePanel api={api} project={me.project.name} code={openedCode} t={t} formatDate={created} onClose={() => setOpened(null)} />
      )}
      {codes.codes.length > 0 && (
        <label class="search">
          {t('codes.search')}{' '}
          <input type="search" value={search} onInput={(e) => setSearch(e.currentTarget.value)} />
        </label>
      )}
      {codes.codes.length > 0 && (
        // On a phone the list's headers are hidden (each code is a card): its order is chosen here.
        <label class="sort-phone">
          {t('codes.sortBy')}{' '}
          <select value={`${sort.by} ${sort.descending ? 'down' : 'up'}`} onChange={(e) => {
            const [by, direction] = e.currentTarget.value.split(' ');
            setSort({ by: by as SortKey, descending: direction === 'down' });
          }}>
            {(['name', 'created', 'new_users'] as SortKey[]).flatMap((by) =>
              ['up', 'down'].map((direction) => (
                <option key={`${by} ${direction}`} value={`${by} ${direction}`}>
                  {t(SORT_LABELS[by])} {direction === 'down' ? '↓' : '↑'}
                </option>
              )),
            )}
          </select>
        </label>
      )}
      {codes.codes.length === 0 ? (
        <p class="empty">{t(mayWrite ? 'codes.empty' : 'codes.emptyReadOnly')}</p>
      ) : (
        <table class="codes">
          <thead>
            <tr>
              <SortableHeader label={t('codes.name')} by="name" sort={sort} onSort={setSort} />
              <th scope="col">{t('codes.kind')}</th>
              <th scope="col">{t('codes.page')}</th>
              <th scope="col">{t('codes.source')}</th>
              <th scope="col">{t('codes.campaign')}</th>
              <SortableHeader label={t('codes.created')} by="created" sort={sort} onSort={setSort} />
              <SortableHeader label={t('codes.newUsers7')} by="new_users" sort={sort} onSort={setSort} number />
              <th scope="col">{t('codes.actions')}</th>
            </tr>
          </thead>
          <tbody>
            {sorted(codes.codes, search, sort).map((code) => (
              <CodeRow
                key={code.id}
                api={api}
                project={me.project.name}
                code={code}
                mayWrite={mayWrite}
                created={created(code.created_at_ms)}
                t={t}
                onChanged={() => setLoads(loads + 1)}
                onOpen={() => setOpened(code.id)}
              />
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

type SortKey = 'name' | 'created' | 'new_users';
const SORT_LABELS: Record<SortKey, Key> = { name: 'codes.name', created: 'codes.created', new_users: 'codes.newUsers7' };
type Listed = Schemas['ListedCode'];

/** The codes whose name, page or UTM values contain `search` (any case), in the chosen order. */
function sorted(codes: Listed[], search: string, sort: { by: SortKey; descending: boolean }): Listed[] {
  const needle = search.trim().toLowerCase();
  const kept = codes.filter((code) =>
    [code.name, code.page, code.id, ...Object.values(code.utm)].some((text) => text?.toLowerCase().includes(needle)),
  );
  const key = (code: Listed): string | number =>
    sort.by === 'name' ? code.name : sort.by === 'created' ? code.created_at_ms : code.past_7_days.new_users;
  return kept.sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    const order = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
    return sort.descending ? -order : order;
  });
}

function SortableHeader({ label, by, sort, onSort, number }: { label: string; by: SortKey; sort: { by: SortKey; descending: boolean }; onSort: (s: { by: SortKey; descending: boolean }) => void; number?: boolean }) {
  const active = sort.by === by;
  return (
    <th scope="col" class={number ? 'number' : ''} aria-sort={active ? (sort.descending ? 'descending' : 'ascending') : 'none'}>
      <button type="button" class="sort" onClick={() => onSort({ by, descending: active ? !sort.descending : by !== 'name' })}>
        {label}
        {active ? (sort.descending ? ' ↓' : ' ↑') : ''}
      </button>
    </th>
  );
}

const root = document.getElementById('app');
if (root) render(<App />, root);
