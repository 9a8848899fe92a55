// Events (the ML log), newest first, filtered by kind (or group), read again every 3 s.
import { time } from '../format.js';
import { navigate, type Route } from '../route.js';
import type { Me, TrainyardEvent } from '../types.js';
import { ListPage, runLink } from '../ui.js';

export function EventsPage({ me, route }: { me: Me; route: Route }) {
  const kind = route.query.get('kind') ?? '';
  return (
    <ListPage title="Events" url={`/api/events?limit=500${kind ? `&kind=${encodeURIComponent(kind)}` : ''}`} everyMs={3000}
      rows={(a: { events: TrainyardEvent[] }) => a.events} rowKey={(e) => String(e.id)} testid="events" empty="No events." initialSort={{ col: 0, desc: true }} columns={[
        { label: 'At', sort: (e) => `${e.at}|${String(e.id).padStart(12, '0')}`, cell: (e) => time(e.at) },
        { label: 'Kind', sort: (e) => e.kind, cell: (e) => e.kind },
        { label: 'Project', sort: (e) => e.project, cell: (e) => e.project },
        { label: 'Subject', sort: (e) => e.subject, cell: (e) => (/^run_[0-9a-z]{14}$/.test(e.subject) ? runLink(e.subject) : e.subject) },
        { label: 'Detail', cell: (e) => e.detail },
      ]}>
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <label>kind<select name="kind" value={kind} onChange={(e) => { const v = (e.target as HTMLSelectElement).value; navigate('/events', v ? new URLSearchParams({ kind: v }) : undefined); }}>
          <option value="">any</option>{me.event_kinds.map((k) => <option key={k} value={k}>{k}</option>)}
        </select></label>
      </form>
    </ListPage>
  );
}
