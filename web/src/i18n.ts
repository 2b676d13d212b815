// The console's words in English and Simplified Chinese: the language comes from the browser,
// can be switched, and is remembered. `zh` has every key of `en` (its type says so): no string
// can be left untranslated.

const en = {
  'app.title': 'promolens',
  'nav.codes': 'Acquisition management',
  'nav.signOut': 'Sign out',
  'lang.switch': '中文',
  'signIn.title': 'Sign in',
  'signIn.key': 'API key',
  'signIn.hint': 'The key your administrator gave you (plk_…), or the one `promolens serve --demo` printed.',
  'signIn.submit': 'Sign in',
  'signIn.ingestRefused':
    'This is an ingest key: it only sends events from the mini-program and cannot open the console. Ask your administrator for a key of your own.',
  'signIn.bad': 'This key was not accepted: {message}',
  'role.admin': 'Administrator',
  'role.marketer': 'Marketer',
  'role.analyst': 'Analyst',
  'role.ingest': 'Ingest',
  'codes.title': 'Promotion codes',
  'codes.authorized': 'Authorized mini-program: {appId}',
  'codes.notAuthorized':
    'No mini-program is authorized yet. For the account’s security, an administrator authorizes it first (its AppID and AppSecret); then codes can be made.',
  'codes.quota': 'A and C codes: {used} of {limit} used',
  'codes.quotaWarning': 'Over 90% of the A and C quota is used: make B codes, which are unlimited.',
  'codes.empty': 'No codes yet.',
  'codes.name': 'Name',
  'codes.kind': 'Kind',
  'codes.page': 'Page',
  'codes.source': 'Source',
  'codes.campaign': 'Campaign',
  'codes.created': 'Created',
  'codes.newUsers7': 'New users, past 7 days',
  'codes.headline': 'New users in the past 7 days from promotion codes: {n}',
  'error.load': 'Could not load: {message}',
  'loading': 'Loading…',
  'new.open': 'New code',
  'new.title': 'New promotion code',
  'new.name': 'Name',
  'new.kind': 'Kind',
  'new.kindA': 'A: mini-program code; page and parameters in at most 128 bytes; counts against the 100,000 A and C codes',
  'new.kindB': 'B: mini-program code; unlimited; carries only the code’s short reference (32 characters)',
  'new.kindC': 'C: square QR code; as A, scanned by any QR reader',
  'new.page': 'Page',
  'new.pageHint': 'A page of the mini-program, e.g. pages/index/index (no leading /, no ?)',
  'new.utm_source': 'Source (utm_source)',
  'new.utm_medium': 'Medium (utm_medium)',
  'new.utm_campaign': 'Campaign (utm_campaign)',
  'new.utm_content': 'Content (utm_content)',
  'new.utm_term': 'Term (utm_term)',
  'new.usedBytes': '{used} of {limit} bytes used',
  'new.usedCharacters': '{used} of {limit} characters used',
  'new.over': '{field} is {actual} {unit}, {over} over the limit of {limit}',
  'new.byReference':
    'The UTM values do not fit beside the code’s reference ({inline} bytes needed): the code will carry only its reference, and its scans take their UTM values from the code’s record.',
  'new.bytes': 'bytes',
  'new.characters': 'characters',
  'new.generate': 'Generate',
  'new.cancel': 'Close',
  'new.made': 'Made code {id}.',
  'new.download': 'Download the image',
  'new.image': 'The code “{name}”',
  'codes.actions': 'Actions',
  'row.download': 'Download',
  'row.downloadOf': 'Download the image of “{name}”',
  'row.rename': 'Rename',
  'row.renameOf': 'Rename “{name}”',
  'row.newName': 'New name',
  'row.save': 'Save',
  'row.cancel': 'Cancel',
  'row.delete': 'Delete',
  'row.deleteOf': 'Delete “{name}”',
  'row.deleteWhat':
    'Delete “{name}”? Its image can no longer be downloaded and it leaves this list. Scans of codes already printed still count, and its data stays in the analyses. WeChat does not give A and C codes back to the quota.',
  'row.deleteConfirm': 'Delete the code',
  'row.keep': 'Keep it',
} as const;

export type Key = keyof typeof en;

const zh: Record<Key, string> = {
  'app.title': 'promolens',
  'nav.codes': '获客管理',
  'nav.signOut': '退出',
  'lang.switch': 'English',
  'signIn.title': '登录',
  'signIn.key': 'API 密钥',
  'signIn.hint': '管理员给你的密钥（plk_…），或 `promolens serve --demo` 打印的密钥。',
  'signIn.submit': '登录',
  'signIn.ingestRefused':
    '这是上报密钥：它只用于小程序上报事件，不能登录控制台。请向管理员申请你自己的密钥。',
  'signIn.bad': '密钥无效：{message}',
  'role.admin': '管理员',
  'role.marketer': '运营',
  'role.analyst': '分析师',
  'role.ingest': '上报',
  'codes.title': '推广码',
  'codes.authorized': '已授权小程序：{appId}',
  'codes.notAuthorized':
    '尚未授权小程序。为了账号安全，请先由管理员授权（AppID 和 AppSecret），之后即可生成推广码。',
  'codes.quota': 'A、C 类码：已用 {used} / {limit}',
  'codes.quotaWarning': 'A、C 类码额度已用超过 90%：请改用不限量的 B 类码。',
  'codes.empty': '还没有推广码。',
  'codes.name': '名称',
  'codes.kind': '类型',
  'codes.page': '页面',
  'codes.source': '来源',
  'codes.campaign': '活动',
  'codes.created': '创建时间',
  'codes.newUsers7': '近 7 天新增用户',
  'codes.headline': '近 7 天推广码带来的新增用户：{n}',
  'error.load': '加载失败：{message}',
  'loading': '加载中…',
  'new.open': '新建推广码',
  'new.title': '新建推广码',
  'new.name': '名称',
  'new.kind': '类型',
  'new.kindA': 'A：小程序码；页面和参数最多 128 字节；与 C 类共用 10 万个的额度',
  'new.kindB': 'B：小程序码；数量不限；只携带推广码的短编号（32 个字符）',
  'new.kindC': 'C：普通二维码；同 A，任何扫码工具都能识别',
  'new.page': '页面',
  'new.pageHint': '小程序的页面，例如 pages/index/index（不以 / 开头，不含 ?）',
  'new.utm_source': '来源（utm_source）',
  'new.utm_medium': '媒介（utm_medium）',
  'new.utm_campaign': '活动（utm_campaign）',
  'new.utm_content': '内容（utm_content）',
  'new.utm_term': '关键词（utm_term）',
  'new.usedBytes': '已用 {used} / {limit} 字节',
  'new.usedCharacters': '已用 {used} / {limit} 个字符',
  'new.over': '{field} 为 {actual} {unit}，超出上限 {limit} 共 {over}',
  'new.byReference':
    'UTM 参数放不进推广码编号旁（需要 {inline} 字节）：推广码只携带编号，扫码时的 UTM 参数从推广码记录中读取。',
  'new.bytes': '字节',
  'new.characters': '个字符',
  'new.generate': '生成',
  'new.cancel': '关闭',
  'new.made': '已生成推广码 {id}。',
  'new.download': '下载图片',
  'new.image': '推广码“{name}”',
  'codes.actions': '操作',
  'row.download': '下载',
  'row.downloadOf': '下载“{name}”的图片',
  'row.rename': '重命名',
  'row.renameOf': '重命名“{name}”',
  'row.newName': '新名称',
  'row.save': '保存',
  'row.cancel': '取消',
  'row.delete': '删除',
  'row.deleteOf': '删除“{name}”',
  'row.deleteWhat':
    '删除“{name}”？删除后不能再下载它的图片，它也不再出现在列表中。已印出的码被扫描仍会计数，数据仍保留在分析中。微信不会把 A、C 类码的额度还回来。',
  'row.deleteConfirm': '删除推广码',
  'row.keep': '保留',
};

export type Lang = 'en' | 'zh';

const dictionaries: Record<Lang, Record<Key, string>> = { en, zh };

export function initialLang(): Lang {
  const saved = localStorage.getItem('promolens.lang');
  if (saved === 'en' || saved === 'zh') return saved;
  return navigator.language.toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

export function rememberLang(lang: Lang) {
  localStorage.setItem('promolens.lang', lang);
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
}

/** The text of `key` in `lang`, with `{name}` placeholders filled in. */
export function translate(lang: Lang, key: Key, values: Record<string, string | number> = {}): string {
  return dictionaries[lang][key].replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? `{${name}}`));
}
