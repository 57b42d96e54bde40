// The connection banner: shown while the socket is away, hidden once it is live again.
import { errorNode } from '../errors.js';

const TEXT = {
  booting: 'Connecting…',
  reconnecting: 'Reconnecting…',
  resyncing: 'Catching up…',
  offline: 'You are offline. Messages you send will go out when you are back.',
};

export function showConnection(connection) {
  const root = document.getElementById('client');
  const banner = document.getElementById('banner');
  root.dataset.state = connection;
  if (connection === 'live') {
    if (!banner.classList.contains('error')) banner.hidden = true;
    return;
  }
  banner.hidden = false;
  banner.className = 'banner';
  banner.textContent = navigator.onLine ? TEXT[connection] || connection : TEXT.offline;
}

// A short-lived notice that something the person asked for did not work.
export function showError(error) {
  const banner = document.getElementById('banner');
  banner.hidden = false;
  banner.className = 'banner error';
  banner.replaceChildren(errorNode(error));
  setTimeout(() => {
    if (banner.classList.contains('error')) banner.hidden = true;
  }, 5000);
}
