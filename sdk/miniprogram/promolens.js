/**
 * promolens mini-program SDK: reports every launch (cold from App.onLaunch, hot from App.onShow)
 * with its scene value and query, so that promolens attributes it to a promotion code / UTM source.
 *
 *   const promolens = require('./promolens.js').init({
 *     endpoint: 'https://analytics.example.com/v1/projects/demo/events',
 *     key: 'plk_…',  // the project's ingest key: it can send events and nothing else
 *   });
 *   App({ onLaunch(o) { promolens.onLaunch(o); }, onShow(o) { promolens.onShow(o); } });
 *   promolens.track('purchase', { amount: 59.9, sku: 'A-1' });  // a core event
 *   promolens.identify(member.openid);  // after a login: links this device's anonymous id
 *
 * - A stable anonymous user id lives in wx storage (`promolens_uid`).
 * - Each event gets an `event_id` once; the queue is kept in wx storage, and a batch that was not
 *   acknowledged is sent again with the same ids, so the server counts a retried event once.
 * - A cold start calls onLaunch and then onShow with the same options: that first onShow is not a
 *   second launch and is not reported.
 * - `track(event, props)` sends a core event (a signup, a purchase); numbers in `props` stay
 *   numbers (`amount` is what promolens sums). `identify(loginId)` sends `$identify` once per
 *   login id and device: promolens counts the anonymous ids linked to one login id as one user.
 * - 4xx answers (a batch the server can never accept) drop the batch; network failures, 5xx,
 *   429 and the answers a fixed configuration cures (401 and 403: a wrong or revoked key; 404: no
 *   such project) keep it and retry with backoff, so a version with the right key sends them.
 */
'use strict';

const UID_KEY = 'promolens_uid';
const QUEUE_KEY = 'promolens_queue';
const LOGIN_KEY = 'promolens_login_id';
/** Core event names: a letter, then letters, digits, `_`, `.`, `-` (the server's rule). */
const EVENT_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;

function randomHex(bytes) {
  let out = '';
  for (let i = 0; i < bytes; i += 1) {
    out += Math.floor(Math.random() * 256).toString(16).padStart(2, '0');
  }
  return out;
}

function createTracker(options) {
  const wxApi = options.wx || (typeof wx !== 'undefined' ? wx : undefined); // eslint-disable-line no-undef
  if (!wxApi) throw new Error('promolens: no wx API available');
  if (!options.endpoint) throw new Error('promolens: endpoint is required');
  if (!options.key) throw new Error("promolens: key is required (the project's ingest key)");
  const batchSize = options.batchSize || 20;
  const flushDelay = options.flushDelay === undefined ? 2000 : options.flushDelay;
  const maxQueue = options.maxQueue || 1000;
  const maxBackoff = options.maxBackoff || 60000;
  const now = options.now || (() => Date.now());
  const appVersion = options.appVersion;

  let queue = [];
  try {
    queue = wxApi.getStorageSync(QUEUE_KEY) || [];
  } catch (e) {
    queue = [];
  }
  let userId = null;
  let inFlight = null;
  let timer = null;
  let failures = 0;
  let launchedAt = null;

  function uid() {
    if (userId) return userId;
    try {
      userId = wxApi.getStorageSync(UID_KEY);
    } catch (e) {
      userId = '';
    }
    if (!userId) {
      userId = `anon-${randomHex(12)}`;
      try {
        wxApi.setStorageSync(UID_KEY, userId);
      } catch (e) {
        /* storage full: the id lives for this session */
      }
    }
    return userId;
  }

  function persist() {
    try {
      wxApi.setStorageSync(QUEUE_KEY, queue);
    } catch (e) {
      /* keep going in memory */
    }
  }

  function record(launchType, launchOptions) {
    const o = launchOptions || {};
    const query = {};
    Object.keys(o.query || {}).forEach((k) => {
      query[k] = String(o.query[k]);
    });
    const event = {
      event_id: newEventId(),
      user_id: uid(),
      ts: now(),
      scene: typeof o.scene === 'number' ? o.scene : Number(o.scene) || undefined,
      path: o.path,
      query,
      launch_type: launchType,
    };
    if (appVersion) event.props = { app_version: appVersion };
    return enqueue(event);
  }

  function newEventId() {
    return `${now().toString(36)}-${randomHex(8)}`;
  }

  /** A core event, or `$identify`. */
  function recordEvent(name, props) {
    const event = { event: name, event_id: newEventId(), user_id: uid(), ts: now() };
    const merged = { ...(appVersion ? { app_version: appVersion } : {}), ...(props || {}) };
    if (Object.keys(merged).length) event.props = merged;
    return enqueue(event);
  }

  function enqueue(event) {
    queue.push(event);
    if (queue.length > maxQueue) queue.splice(0, queue.length - maxQueue);
    persist();
    schedule(queue.length >= batchSize ? 0 : flushDelay);
    return event;
  }

  function schedule(delay) {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      flush();
    }, delay);
    // Outside the mini-program (Node tests, SSR) a pending send must not keep the process alive.
    if (timer && typeof timer.unref === 'function') timer.unref();
  }

  /** Sends what is queued; resolves when the queue is empty or a send failed. */
  function flush() {
    if (inFlight) return inFlight;
    if (queue.length === 0) return Promise.resolve();
    const batch = queue.slice(0, batchSize);
    inFlight = new Promise((resolve) => {
      const done = (sent) => {
        inFlight = null;
        if (sent) {
          const ids = new Set(batch.map((e) => e.event_id));
          queue = queue.filter((e) => !ids.has(e.event_id));
          persist();
          failures = 0;
          resolve(queue.length ? flush() : undefined);
        } else {
          failures += 1;
          const backoff = Math.min(maxBackoff, 1000 * 2 ** Math.min(failures, 10));
          schedule(backoff);
          resolve();
        }
      };
      wxApi.request({
        url: options.endpoint,
        method: 'POST',
        data: JSON.stringify(batch),
        header: { 'content-type': 'application/json', authorization: `Bearer ${options.key}` },
        success(res) {
          const status = res.statusCode;
          if (status >= 200 && status < 300) done(true);
          // The server will never take this batch (malformed, too large): drop it, keep going.
          else if (status >= 400 && status < 500 && ![401, 403, 404, 408, 429].includes(status)) done(true);
          else done(false);
        },
        fail() {
          done(false);
        },
      });
    });
    return inFlight;
  }

  return {
    /** Call from App.onLaunch(options). */
    onLaunch(launchOptions) {
      launchedAt = now();
      return record('cold', launchOptions);
    },
    /** Call from App.onShow(options). */
    onShow(launchOptions) {
      // The onShow that follows onLaunch on a cold start is the same launch.
      if (launchedAt !== null) {
        launchedAt = null;
        return null;
      }
      return record('hot', launchOptions);
    },
    /**
     * A core event: `track('purchase', { amount: 59.9, sku: 'A-1' })`. Launches are reported by
     * onLaunch and onShow, not here.
     */
    track(name, props) {
      if (typeof name !== 'string' || !EVENT_NAME.test(name) || name === 'launch') {
        throw new Error(`promolens: \`${name}\` is not a core event name (a letter, then letters, digits, _ . -; not launch)`);
      }
      if (props !== undefined && (props === null || typeof props !== 'object' || Array.isArray(props))) {
        throw new Error('promolens: props must be an object');
      }
      return recordEvent(name, props);
    },
    /**
     * The user logged in: `identify(openid)` or a member number. Sent once per login id on this
     * device (kept in wx storage); the anonymous id stays this device's `user_id`.
     */
    identify(loginId) {
      if (typeof loginId !== 'string' || loginId === '' || loginId.length > 128) {
        throw new Error('promolens: identify needs a login id of 1 to 128 characters');
      }
      let known = '';
      try {
        known = wxApi.getStorageSync(LOGIN_KEY) || '';
      } catch (e) {
        known = '';
      }
      if (known === loginId) return null;
      try {
        wxApi.setStorageSync(LOGIN_KEY, loginId);
      } catch (e) {
        /* sent again next session: the server links it once */
      }
      return recordEvent('$identify', { login_id: loginId });
    },
    /** Call from App.onHide() to send what is queued before the app goes to the background. */
    onHide() {
      return flush();
    },
    flush,
    pending() {
      return queue.length;
    },
    userId: uid,
  };
}

module.exports = { init: createTracker, createTracker };
