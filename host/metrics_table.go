package host

// Metric is how one counter of relay.Stats or execlog.Stats (by its field
// name, ExecLog-prefixed for exec.log's) is exposed to Prometheus: alone by
// relay serve, with a sandbox label by a host daemon.
type Metric struct {
	Field string
	Name  string
	Help  string
	Gauge bool
	Nanos bool // a duration in nanoseconds, exposed in seconds
}

// Metrics lists every counter; cmd/internal/serve's TestMetricsCoverStats
// fails when a Stats field has no entry here.
var Metrics = []Metric{
	{Field: "FramesToGuest", Name: "relay_to_guest_frames_total", Help: "Frames forwarded to the guest: clients' frames and the relay's own SIGKILLs."},
	{Field: "BytesToGuest", Name: "relay_to_guest_bytes_total", Help: "Bytes of the frames forwarded to the guest."},
	{Field: "FramesToClient", Name: "relay_to_client_frames_total", Help: "Guest frames queued for delivery to a client."},
	{Field: "BytesToClient", Name: "relay_to_client_bytes_total", Help: "Bytes of the guest frames queued for delivery to a client."},
	{Field: "ClientsAccepted", Name: "relay_clients_accepted_total", Help: "Client connections given a slot and a handshake."},
	{Field: "ClientsActive", Name: "relay_clients_active", Help: "Clients connected now.", Gauge: true},
	{Field: "ClientsRefused", Name: "relay_clients_refused_total", Help: "Connections closed because the peer's uid is not allowed or its credentials were unavailable."},
	{Field: "AcceptQueued", Name: "relay_accept_queued_total", Help: "Connections that had to wait for a free slot."},
	{Field: "AcceptTimeouts", Name: "relay_accept_timeouts_total", Help: "Waiting connections closed because no slot freed within the accept wait."},
	{Field: "AcceptOverflows", Name: "relay_accept_overflows_total", Help: "Connections closed because all slots were busy and the wait queue was full."},
	{Field: "Disconnects", Name: "relay_disconnects_total", Help: "Clients disconnected, for any reason."},
	{Field: "ProtocolErrors", Name: "relay_protocol_errors_total", Help: "Clients disconnected for a malformed or out-of-range frame."},
	{Field: "Evictions", Name: "relay_evictions_total", Help: "Clients disconnected for holding up the guest stream with a full output buffer."},
	{Field: "SessionsOpened", Name: "relay_sessions_opened_total", Help: "Session-start frames from clients (exec and fs requests)."},
	{Field: "SessionsActive", Name: "relay_sessions_active", Help: "Sessions open or quarantined now.", Gauge: true},
	{Field: "KillsSent", Name: "relay_kills_sent_total", Help: "SIGKILLs sent to the guest for the sessions of departed clients."},
	{Field: "IDCollisions", Name: "relay_id_collisions_total", Help: "Session starts refused because their id still named a departed client's quarantined session."},
	{Field: "NoClientDrops", Name: "relay_no_client_drops_total", Help: "Guest frames dropped because no client held their slot."},
	{Field: "QuarantineDrops", Name: "relay_quarantine_drops_total", Help: "Guest frames dropped because their session's client had departed."},
	{Field: "QuarantineExpired", Name: "relay_quarantine_expired_total", Help: "Quarantined sessions forgotten because the guest never ended them."},
	{Field: "QuarantineOverflows", Name: "relay_quarantine_overflows_total", Help: "Session starts refused because the slot's open and quarantined sessions reached the limit."},
	{Field: "CorruptIncidents", Name: "relay_corrupt_incidents_total", Help: "Times the guest stream's framing was corrupt and had to be resynchronised."},
	{Field: "CorruptBytes", Name: "relay_corrupt_skipped_bytes_total", Help: "Guest stream bytes skipped while resynchronising corrupt framing."},
	{Field: "RingFullNanos", Name: "relay_ring_full_seconds_total", Help: "Time the guest's input ring was full while client frames waited for it.", Nanos: true},
	{Field: "GuestStallNanos", Name: "relay_guest_stall_seconds_total", Help: "Time the guest stream waited on a client whose output buffer was full.", Nanos: true},
	{Field: "Shutdowns", Name: "relay_shutdowns_total", Help: "core.shutdown frames forwarded to the guest."},
	{Field: "LogDrops", Name: "relay_log_drops_total", Help: "Log records dropped because the relay's log queue was full."},
	{Field: "InputStarved", Name: "relay_input_starved_total", Help: "Client reads put off because the relay's input budget was spent."},
	{Field: "SessionsRefused", Name: "relay_sessions_refused_total", Help: "Session starts refused because the relay's session table was full."},
	{Field: "Slots", Name: "relay_slots", Help: "Client slots of the handshake form the relay speaks: 16 (0.4) or 128 (0.5); 0 before core.ready.", Gauge: true},
	{Field: "Handshake", Name: "relay_handshake_form", Help: "The handshake form the relay speaks: 1 for 0.4 ([offset]), 2 for 0.5 ([id_start][id_end_exclusive]); 0 before core.ready.", Gauge: true},
	{Field: "ExecLogLines", Name: "relay_exec_log_lines_total", Help: "Lines written to exec.log."},
	{Field: "ExecLogBytes", Name: "relay_exec_log_bytes_total", Help: "Bytes written to exec.log."},
	{Field: "ExecLogLostBytes", Name: "relay_exec_log_lost_bytes_total", Help: "Exec output bytes not written to exec.log because its buffer was full or it was closed."},
	{Field: "ExecLogLostEvents", Name: "relay_exec_log_lost_events_total", Help: "Exec output chunks that lost some or all of their bytes on the way to exec.log."},
	{Field: "ExecLogRotations", Name: "relay_exec_log_rotations_total", Help: "Times exec.log was rotated."},
	{Field: "ExecLogErrors", Name: "relay_exec_log_errors_total", Help: "Failed writes, renames, opens and closes of exec.log files."},
}
