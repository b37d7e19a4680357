package serve

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrelay/agentrelay/execlog"
)

// metric is how one counter of relay.Stats or execlog.Stats (by its
// snapshot name) is exposed to Prometheus.
type metric struct {
	field string
	name  string
	help  string
	gauge bool
	nanos bool // a duration in nanoseconds, exposed in seconds
}

// metrics lists every counter; TestMetricsCoverStats fails when a Stats
// field has no entry here.
var metrics = []metric{
	{field: "FramesToGuest", name: "relay_to_guest_frames_total", help: "Frames forwarded to the guest: clients' frames and the relay's own SIGKILLs."},
	{field: "BytesToGuest", name: "relay_to_guest_bytes_total", help: "Bytes of the frames forwarded to the guest."},
	{field: "FramesToClient", name: "relay_to_client_frames_total", help: "Guest frames queued for delivery to a client."},
	{field: "BytesToClient", name: "relay_to_client_bytes_total", help: "Bytes of the guest frames queued for delivery to a client."},
	{field: "ClientsAccepted", name: "relay_clients_accepted_total", help: "Client connections given a slot and a handshake."},
	{field: "ClientsActive", name: "relay_clients_active", help: "Clients connected now.", gauge: true},
	{field: "ClientsRefused", name: "relay_clients_refused_total", help: "Connections closed because the peer's uid is not allowed or its credentials were unavailable."},
	{field: "AcceptQueued", name: "relay_accept_queued_total", help: "Connections that had to wait for a free slot."},
	{field: "AcceptTimeouts", name: "relay_accept_timeouts_total", help: "Waiting connections closed because no slot freed within the accept wait."},
	{field: "AcceptOverflows", name: "relay_accept_overflows_total", help: "Connections closed because all slots were busy and the wait queue was full."},
	{field: "Disconnects", name: "relay_disconnects_total", help: "Clients disconnected, for any reason."},
	{field: "ProtocolErrors", name: "relay_protocol_errors_total", help: "Clients disconnected for a malformed or out-of-range frame."},
	{field: "Evictions", name: "relay_evictions_total", help: "Clients disconnected for holding up the guest stream with a full output buffer."},
	{field: "SessionsOpened", name: "relay_sessions_opened_total", help: "Session-start frames from clients (exec and fs requests)."},
	{field: "SessionsActive", name: "relay_sessions_active", help: "Sessions open or quarantined now.", gauge: true},
	{field: "KillsSent", name: "relay_kills_sent_total", help: "SIGKILLs sent to the guest for the sessions of departed clients."},
	{field: "IDCollisions", name: "relay_id_collisions_total", help: "Session starts refused because their id still named a departed client's quarantined session."},
	{field: "NoClientDrops", name: "relay_no_client_drops_total", help: "Guest frames dropped because no client held their slot."},
	{field: "QuarantineDrops", name: "relay_quarantine_drops_total", help: "Guest frames dropped because their session's client had departed."},
	{field: "QuarantineExpired", name: "relay_quarantine_expired_total", help: "Quarantined sessions forgotten because the guest never ended them."},
	{field: "QuarantineOverflows", name: "relay_quarantine_overflows_total", help: "Session starts refused because the slot's open and quarantined sessions reached the limit."},
	{field: "CorruptIncidents", name: "relay_corrupt_incidents_total", help: "Times the guest stream's framing was corrupt and had to be resynchronised."},
	{field: "CorruptBytes", name: "relay_corrupt_skipped_bytes_total", help: "Guest stream bytes skipped while resynchronising corrupt framing."},
	{field: "RingFullNanos", name: "relay_ring_full_seconds_total", help: "Time the guest's input ring was full while client frames waited for it.", nanos: true},
	{field: "GuestStallNanos", name: "relay_guest_stall_seconds_total", help: "Time the guest stream waited on a client whose output buffer was full.", nanos: true},
	{field: "Shutdowns", name: "relay_shutdowns_total", help: "core.shutdown frames forwarded to the guest."},
	{field: "LogDrops", name: "relay_log_drops_total", help: "Log records dropped because the relay's log queue was full."},
	{field: "InputStarved", name: "relay_input_starved_total", help: "Client reads put off because the relay's input budget was spent."},
	{field: "SessionsRefused", name: "relay_sessions_refused_total", help: "Session starts refused because the relay's session table was full."},
	{field: "Slots", name: "relay_slots", help: "Client slots of the handshake form the relay speaks: 16 (0.4) or 128 (0.5); 0 before core.ready.", gauge: true},
	{field: "Handshake", name: "relay_handshake_form", help: "The handshake form the relay speaks: 1 for 0.4 ([offset]), 2 for 0.5 ([id_start][id_end_exclusive]); 0 before core.ready.", gauge: true},
	{field: "ExecLogLines", name: "relay_exec_log_lines_total", help: "Lines written to exec.log."},
	{field: "ExecLogBytes", name: "relay_exec_log_bytes_total", help: "Bytes written to exec.log."},
	{field: "ExecLogLostBytes", name: "relay_exec_log_lost_bytes_total", help: "Exec output bytes not written to exec.log because its buffer was full or it was closed."},
	{field: "ExecLogLostEvents", name: "relay_exec_log_lost_events_total", help: "Exec output chunks that lost some or all of their bytes on the way to exec.log."},
	{field: "ExecLogRotations", name: "relay_exec_log_rotations_total", help: "Times exec.log was rotated."},
	{field: "ExecLogErrors", name: "relay_exec_log_errors_total", help: "Failed writes, renames, opens and closes of exec.log files."},
}

// statsCollector reads the counters at scrape time; the relay's loop only
// ever writes plain atomics.
type statsCollector struct {
	srv Server
	xl  *execlog.Writer
}

var descs = func() map[string]*prometheus.Desc {
	m := make(map[string]*prometheus.Desc, len(metrics))
	for _, x := range metrics {
		m[x.field] = prometheus.NewDesc(x.name, x.help, nil, nil)
	}
	return m
}()

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, x := range metrics {
		ch <- descs[x.field]
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	snap := snapshot(c.srv, c.xl)
	for _, x := range metrics {
		v, ok := snap[x.field]
		if !ok {
			continue // exec.log is off
		}
		kind, f := prometheus.CounterValue, float64(v)
		if x.gauge {
			kind = prometheus.GaugeValue
		}
		if x.nanos {
			f /= 1e9
		}
		ch <- prometheus.MustNewConstMetric(descs[x.field], kind, f)
	}
}

// buildInfo is relay_build_info: always 1, its labels say which build runs.
func buildInfo() prometheus.Collector {
	version, revision := "(devel)", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "relay_build_info",
		Help:        "Always 1; the labels give the relay's module version, VCS revision and Go version.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}
