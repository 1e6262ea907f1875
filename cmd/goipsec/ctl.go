package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/goipsec/goipsec/internal/config"
	"github.com/goipsec/goipsec/internal/control"
	"github.com/goipsec/goipsec/sad"
)

func init() {
	subcommands = append(subcommands,
		newCtlStatusCmd, newCtlListSAsCmd, newCtlReloadCmd,
		func() *cobra.Command {
			return newCtlNamedCmd("initiate", "Bring up a connection", (*control.Client).Initiate, "initiated")
		},
		func() *cobra.Command {
			return newCtlNamedCmd("terminate", "Take down a connection", (*control.Client).Terminate, "terminated")
		},
		func() *cobra.Command {
			return newCtlNamedCmd("rekey", "Rekey a connection", (*control.Client).Rekey, "rekeyed")
		},
	)
}

// ctlTimeout bounds one control command.
const ctlTimeout = 60 * time.Second

// ctlSocketEnv names the environment variable that overrides the default
// control socket path.
const ctlSocketEnv = "GOIPSEC_SOCKET"

// ctlDefaultSocket is the control socket path when --socket is not given.
func ctlDefaultSocket() string {
	return config.DefaultSocketPath()
}

// ctlFlags adds --socket to c and returns where its value goes.
func ctlFlags(c *cobra.Command) *string {
	var socket string
	c.Flags().StringVar(&socket, "socket", ctlDefaultSocket(), "the daemon's control socket ($"+ctlSocketEnv+" overrides the default)")
	c.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return ctlUsage(cmd, err) })
	return &socket
}

// ctlUsage makes err exit with status 2, naming the command's help.
func ctlUsage(cmd *cobra.Command, err error) error {
	return &exitError{code: 2, err: fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())}
}

// ctlArgs wants exactly n arguments, named what.
func ctlArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			if n == 0 {
				return ctlUsage(cmd, fmt.Errorf("want no arguments, got %d", len(args)))
			}
			return ctlUsage(cmd, fmt.Errorf("want %s, got %d arguments", what, len(args)))
		}
		return nil
	}
}

// ctlRun calls the daemon with a client for socket, under a timeout and
// Ctrl-C, and explains errors reaching it.
func ctlRun(cmd *cobra.Command, socket string, f func(context.Context, *control.Client) error) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, ctlTimeout)
	defer cancel()
	err := f(ctx, control.NewClient(socket))
	var de *control.DialError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &de) && errors.Is(err, fs.ErrPermission):
		return &exitError{code: 1, err: fmt.Errorf("%w (only the daemon's user and root may use it)", err)}
	case errors.As(err, &de):
		return &exitError{code: 1, err: fmt.Errorf("%w (is `goipsec run` running?)", err)}
	}
	return &exitError{code: 1, err: err}
}

func ctlWriteJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func newCtlStatusCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the running daemon's status and counters",
		Args:  ctlArgs(0, ""),
	}
	socket := ctlFlags(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		return ctlRun(cmd, *socket, func(ctx context.Context, cl *control.Client) error {
			st, err := cl.Status(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				return ctlWriteJSON(cmd.OutOrStdout(), st)
			}
			return ctlWriteStatus(cmd.OutOrStdout(), st)
		})
	}
	return c
}

func newCtlListSAsCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list-sas",
		Short: "List the installed SAs with their counters",
		Args:  ctlArgs(0, ""),
	}
	socket := ctlFlags(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		return ctlRun(cmd, *socket, func(ctx context.Context, cl *control.Client) error {
			l, err := cl.ListAll(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				if l.SAs == nil {
					l.SAs = []control.SA{}
				}
				if l.IKESAs == nil {
					l.IKESAs = []control.IKESA{}
				}
				ctlSortSAs(l.SAs)
				return ctlWriteJSON(cmd.OutOrStdout(), l)
			}
			return ctlWriteSAs(cmd.OutOrStdout(), l.IKESAs, l.SAs)
		})
	}
	return c
}

func newCtlNamedCmd(name, short string, f func(*control.Client, context.Context, string) error, done string) *cobra.Command {
	c := &cobra.Command{
		Use:   name + " NAME",
		Short: short,
		Args:  ctlArgs(1, "the connection's NAME"),
	}
	socket := ctlFlags(c)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		return ctlRun(cmd, *socket, func(ctx context.Context, cl *control.Client) error {
			if err := f(cl, ctx, args[0]); err != nil {
				var ce *control.Error
				if errors.As(err, &ce) {
					return fmt.Errorf("%s %s: %w", name, args[0], err)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", done, args[0])
			return nil
		})
	}
	return c
}

func newCtlReloadCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "reload",
		Short: "Make the daemon reread its configuration",
		Args:  ctlArgs(0, ""),
	}
	socket := ctlFlags(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		return ctlRun(cmd, *socket, func(ctx context.Context, cl *control.Client) error {
			if err := cl.Reload(ctx); err != nil {
				var ce *control.Error
				if errors.As(err, &ce) {
					return fmt.Errorf("reload: %w", err)
				}
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "configuration reloaded")
			return nil
		})
	}
	return c
}

// ctlSecs formats a number of seconds as a duration ("1h2m3s").
func ctlSecs(s int64) string { return (time.Duration(s) * time.Second).String() }

// ctlWriteStatus prints st for a person.
func ctlWriteStatus(w io.Writer, st *control.Status) error {
	var b strings.Builder
	fmt.Fprintf(&b, "goipsec %s, pid %d, up %s", st.Version, st.PID, ctlSecs(st.UptimeSeconds))
	if !st.Started.IsZero() {
		fmt.Fprintf(&b, " (since %s)", st.Started.UTC().Format(time.RFC3339))
	}
	b.WriteString("\n")
	tun := st.TunMode
	if st.TunName != "" {
		tun += " " + st.TunName
	}
	metrics := st.Metrics
	if metrics == "" {
		metrics = "off"
	}
	fmt.Fprintf(&b, "  listening on %s, tun %s, metrics %s\n", st.Listen, tun, metrics)
	fmt.Fprintf(&b, "  %d connections, %d children, SAs: %d in, %d out\n", st.Connections, st.Children, st.SAsIn, st.SAsOut)
	d := st.Dataplane
	b.WriteString("dataplane:\n")
	fmt.Fprintf(&b, "  cleartext in  %12d packets, %14d bytes\n", d.CleartextPackets, d.CleartextBytes)
	fmt.Fprintf(&b, "  ESP sent      %12d packets, %14d bytes\n", d.SentPackets, d.SentBytes)
	fmt.Fprintf(&b, "  UDP received  %12d packets, %14d bytes\n", d.ReceivedPackets, d.ReceivedBytes)
	fmt.Fprintf(&b, "  delivered     %12d packets\n", d.Delivered)
	fmt.Fprintf(&b, "  IKE received  %12d messages\n", d.IKE)
	fmt.Fprintf(&b, "  keepalives    %12d received, %d sent\n", d.KeepalivesRx, d.KeepalivesTx)
	var drops []string
	for _, n := range d.Drops() {
		if n.Value != 0 {
			drops = append(drops, fmt.Sprintf("%s %d", n.Name, n.Value))
		}
	}
	if len(drops) == 0 {
		drops = []string{"none"}
	}
	fmt.Fprintf(&b, "  drops         %s\n", strings.Join(drops, ", "))
	fmt.Fprintf(&b, "  socket errors %d sending, %d receiving\n", d.SendErrors, d.RecvErrors)
	_, err := io.WriteString(w, b.String())
	return err
}

// ctlDropOrder is the order in which SA drop reasons are printed.
func ctlDropOrder(m map[string]uint64) []string {
	var out []string
	known := map[string]bool{}
	for r := sad.DropReason(0); r < sad.NumDropReasons; r++ {
		known[r.String()] = true
		if m[r.String()] != 0 {
			out = append(out, r.String())
		}
	}
	var rest []string
	for k, v := range m {
		if !known[k] && v != 0 {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// ctlSortSAs orders SAs by connection, child, direction (in first) and age
// (newest first).
func ctlSortSAs(sas []control.SA) {
	dirRank := func(d string) int {
		if d == "in" {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(sas, func(a, b control.SA) int {
		return cmp.Or(cmp.Compare(a.Connection, b.Connection), cmp.Compare(a.Child, b.Child), cmp.Compare(a.ChildID, b.ChildID),
			cmp.Compare(dirRank(a.Direction), dirRank(b.Direction)), cmp.Compare(a.AgeSeconds, b.AgeSeconds), cmp.Compare(a.SPI, b.SPI))
	})
}

// ctlWriteSAs prints the SAs for a person, like swanctl --list-sas: by
// connection, its IKE SAs, then its children's SAs with their counters.
func ctlWriteSAs(w io.Writer, ikes []control.IKESA, sas []control.SA) error {
	if len(sas) == 0 && len(ikes) == 0 {
		_, err := io.WriteString(w, "no IPsec SAs\n")
		return err
	}
	sas = slices.Clone(sas)
	ctlSortSAs(sas)
	byConn := map[string][]control.IKESA{}
	var conns []string
	for _, ik := range ikes {
		if _, ok := byConn[ik.Connection]; !ok {
			conns = append(conns, ik.Connection)
		}
		byConn[ik.Connection] = append(byConn[ik.Connection], ik)
	}
	for _, sa := range sas {
		if !slices.Contains(conns, sa.Connection) {
			conns = append(conns, sa.Connection)
			byConn[sa.Connection] = nil
		}
	}
	slices.Sort(conns)
	var b strings.Builder
	for _, conn := range conns {
		fmt.Fprintf(&b, "%s:\n", ctlOrDash(conn))
		for _, ik := range byConn[conn] {
			ctlWriteIKE(&b, ik)
		}
		for i := 0; i < len(sas); {
			j := i
			for j < len(sas) && sas[j].Connection == sas[i].Connection && sas[j].Child == sas[i].Child && sas[j].ChildID == sas[i].ChildID {
				j++
			}
			if sas[i].Connection == conn {
				ctlWriteChild(&b, sas[i:j])
			}
			i = j
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ctlWriteIKE prints one IKE SA, swanctl-style: the SPI of our role is
// starred.
func ctlWriteIKE(b *strings.Builder, ik control.IKESA) {
	si, sr := ik.SPIi+"_i", ik.SPIr+"_r"
	if ik.Initiator {
		si += "*"
	} else {
		sr += "*"
	}
	fmt.Fprintf(b, "  IKE #%d, %s, IKEv2, %s %s, peer %s\n", ik.Serial, ik.State, si, sr, ctlOrDash(ik.Peer))
	if ik.LocalID != "" || ik.RemoteID != "" {
		fmt.Fprintf(b, "    local '%s', remote '%s'\n", ik.LocalID, ik.RemoteID)
	}
	var line []string
	if ik.Proposal != "" {
		line = append(line, ik.Proposal)
	}
	if !ik.Established.IsZero() {
		line = append(line, "established "+ctlSecs(ik.AgeSeconds)+" ago")
	}
	for _, t := range []struct {
		what string
		in   *int64
	}{{"rekeying", ik.RekeyInSeconds}, {"reauthenticating", ik.ReauthInSeconds}, {"expires", ik.ExpiresInSeconds}} {
		switch p := t.in; {
		case p == nil || ik.State != "ESTABLISHED":
		case *p >= 0:
			line = append(line, t.what+" in "+ctlSecs(*p))
		default:
			line = append(line, t.what+" overdue by "+ctlSecs(-*p))
		}
	}
	if len(line) > 0 {
		fmt.Fprintf(b, "    %s\n", strings.Join(line, ", "))
	}
}

func ctlOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ctlWriteChild prints one child's SAs (sorted: inbound first, newest first).
func ctlWriteChild(b *strings.Builder, sas []control.SA) {
	// The reference SA is the newest outbound one, else the newest.
	ref := sas[0]
	for _, sa := range sas {
		if sa.Direction == "out" {
			ref = sa
			break
		}
	}
	fmt.Fprintf(b, "  %s: #%d, %s, %s, %s:%s, peer %s\n", ctlOrDash(ref.Child), ref.ChildID, ctlStateWord(ref.State),
		strings.ToUpper(ref.Mode), strings.ToUpper(ref.Proto), ref.Transform, ctlOrDash(ref.Peer))
	fmt.Fprintf(b, "    %s\n", ctlTiming(ref))
	for _, sa := range sas {
		fmt.Fprintf(b, "    %-3s %s, %12d bytes, %10d packets", sa.Direction, sa.SPI, sa.Bytes, sa.Packets)
		if sa.State != ref.State {
			fmt.Fprintf(b, ", %s", sa.State)
		}
		if sa.AgeSeconds != ref.AgeSeconds {
			fmt.Fprintf(b, ", installed %s ago", ctlSecs(sa.AgeSeconds))
		}
		if sa.Peer != ref.Peer {
			fmt.Fprintf(b, ", peer %s", ctlOrDash(sa.Peer))
		}
		if reasons := ctlDropOrder(sa.Drops); len(reasons) > 0 {
			parts := make([]string, len(reasons))
			for k, r := range reasons {
				parts[k] = fmt.Sprintf("%s %d", r, sa.Drops[r])
			}
			fmt.Fprintf(b, ", dropped: %s", strings.Join(parts, ", "))
		}
		b.WriteString("\n")
	}
}

func ctlStateWord(s string) string { return strings.ToUpper(s) }

// ctlTiming describes an SA's age and the time left to rekey and expiry.
func ctlTiming(sa control.SA) string {
	s := fmt.Sprintf("installed %s ago", ctlSecs(sa.AgeSeconds))
	if p := sa.RekeyInSeconds; p != nil {
		if *p >= 0 {
			s += fmt.Sprintf(", rekeying in %s", ctlSecs(*p))
		} else {
			s += fmt.Sprintf(", rekey overdue by %s", ctlSecs(-*p))
		}
	}
	if p := sa.ExpiresInSeconds; p != nil && *p >= 0 {
		s += fmt.Sprintf(", expires in %s", ctlSecs(*p))
	}
	return s
}
