package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/goipsec/goipsec/esp"
	"github.com/goipsec/goipsec/internal/pcaptool"
	"github.com/goipsec/goipsec/internal/saspec"
)

func init() {
	subcommands = append(subcommands, newPcapCmd)
}

// pcapUsage makes err exit with status 2, naming the command's help.
func pcapUsage(cmd *cobra.Command, err error) error {
	return &exitError{code: 2, err: fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())}
}

func newPcapCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "pcap",
		Short: "Offline capture tools: decrypt and verify, or encrypt, ESP and AH in pcap files",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return pcapUsage(cmd, fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath()))
			}
			return cmd.Help()
		},
	}
	c.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return pcapUsage(cmd, err) })
	c.AddCommand(newPcapDecryptCmd(), newPcapEncryptCmd())
	return c
}

func pcapInOutArgs(cmd *cobra.Command, args []string) error {
	if len(args) != 2 {
		return pcapUsage(cmd, fmt.Errorf("want the input and output files (IN OUT), got %d arguments", len(args)))
	}
	return nil
}

// pcapParseSAs parses the --sa flags; errors are usage errors.
func pcapParseSAs(cmd *cobra.Command, specs []string) ([]*saspec.Spec, error) {
	var out []*saspec.Spec
	seen := map[uint32]bool{}
	for i, s := range specs {
		sp, err := saspec.Parse(s)
		if err != nil {
			return nil, pcapUsage(cmd, fmt.Errorf("--sa #%d: %w", i+1, err))
		}
		if seen[sp.SPI] {
			return nil, pcapUsage(cmd, fmt.Errorf("--sa #%d: spi %#x given twice", i+1, sp.SPI))
		}
		seen[sp.SPI] = true
		out = append(out, sp)
	}
	return out, nil
}

func newPcapDecryptCmd() *cobra.Command {
	var specs []string
	var ports []uint
	c := &cobra.Command{
		Use:   "decrypt --sa SPEC [--sa SPEC...] IN OUT",
		Short: "Verify and decrypt the ESP and AH packets of a capture",
		Long: `Verify and decrypt the ESP packets (also ESP in UDP, RFC 3948, on the
--udp-port ports) and verify the AH packets of the capture IN (pcap or
pcapng; "-" for stdin) with the SAs given, found by SPI, and write a pcap with
the same link type to OUT ("-" for stdout). Tunnel-mode packets become their
inner packet, transport-mode packets the IP packet without ESP or AH; IKE,
NAT-T keepalives and other packets are copied unchanged.

Each rejected packet (bad ICV, replay, unknown SPI, truncated...) is reported
on stderr and left out. Exit status: 0 if no IPsec packet was rejected, 1 if
some were (or on errors), 2 on usage errors.

SA spec: spi=0x1234,proto=esp,enc=aes128gcm16,key=0x<hex> or
spi=0x1234,proto=esp,enc=aes128,key=0x<hex>,integ=sha256,authkey=0x<hex> or
spi=0x1234,proto=ah,integ=sha256,authkey=0x<hex>; optional esn, window=N
(0: anti-replay off), seq=N (the first sequence number expected: earlier ones
count as already received; with esn it gives the high-order bits of a capture
that starts late in the SA's life).`,
		Args: pcapInOutArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(specs) == 0 {
				return pcapUsage(cmd, errors.New("no --sa given"))
			}
			sas, err := pcapParseSAs(cmd, specs)
			if err != nil {
				return err
			}
			defer func() {
				for _, sp := range sas {
					sp.Zero()
				}
			}()
			opts := &pcaptool.DecryptOptions{SAs: sas, Log: cmd.ErrOrStderr()}
			for _, p := range ports {
				if p == 0 || p > 0xffff {
					return pcapUsage(cmd, fmt.Errorf("--udp-port %d: want 1 to 65535", p))
				}
				opts.UDPPorts = append(opts.UDPPorts, uint16(p))
			}
			var st *pcaptool.DecryptStats
			err = pcapWithFiles(cmd, args[0], args[1], func(in io.Reader, out io.Writer) error {
				var err error
				st, err = pcaptool.Decrypt(in, out, opts)
				return err
			})
			if st != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "pcap decrypt: %s\n", st)
			}
			if err != nil {
				return err
			}
			if st.Rejected > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d IPsec packets rejected", st.Rejected, st.IPsec)}
			}
			return nil
		},
	}
	c.Flags().StringArrayVar(&specs, "sa", nil, "an inbound SA (repeatable): spi=0x...,proto=esp,enc=...,key=0x...[,integ=...,authkey=0x...] or spi=0x...,proto=ah,integ=...,authkey=0x...; optional esn, window=N, seq=N (first expected)")
	c.Flags().UintSliceVar(&ports, "udp-port", []uint{pcaptool.NATTPort}, "UDP ports that carry ESP (RFC 3948)")
	return c
}

func newPcapEncryptCmd() *cobra.Command {
	var (
		specs            []string
		mode, tsrc, tdst string
		udpEncap         string
	)
	c := &cobra.Command{
		Use:   "encrypt --sa SPEC --mode tunnel|transport [--tunnel-src IP --tunnel-dst IP] [--udp-encap SPORT:DPORT] IN OUT",
		Short: "Protect each IP packet of a capture with an ESP or AH SA",
		Long: `Protect each IP packet of the capture IN (pcap or pcapng; "-" for stdin)
with the ESP or AH SA, in tunnel mode (a new outer IPv4 or IPv6 header from
--tunnel-src to --tunnel-dst, TTL 64) or transport mode (the packet's own
header), ESP optionally inside UDP (RFC 3948; not for AH), and write a pcap
with the same link type to OUT ("-" for stdout). Sequence numbers start at the
spec's seq (default 1). Records without an IP packet are copied unchanged.

Packets that cannot be protected are reported on stderr and left out. Exit
status: 0 if every IP packet was protected, 1 otherwise (or on errors), 2 on
usage errors.`,
		Args: pcapInOutArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(specs) != 1 {
				return pcapUsage(cmd, fmt.Errorf("want exactly one --sa, got %d", len(specs)))
			}
			sas, err := pcapParseSAs(cmd, specs)
			if err != nil {
				return err
			}
			defer sas[0].Zero()
			opts := &pcaptool.EncryptOptions{SA: sas[0], Log: cmd.ErrOrStderr()}
			switch mode {
			case "tunnel":
				opts.Mode = esp.Tunnel
			case "transport":
				opts.Mode = esp.Transport
			case "":
				return pcapUsage(cmd, errors.New("--mode is required: tunnel or transport"))
			default:
				return pcapUsage(cmd, fmt.Errorf("--mode: want tunnel or transport, got %q", mode))
			}
			for _, a := range []struct {
				flag, val string
				addr      *netip.Addr
			}{{"--tunnel-src", tsrc, &opts.TunnelSrc}, {"--tunnel-dst", tdst, &opts.TunnelDst}} {
				if a.val == "" {
					continue
				}
				ip, err := netip.ParseAddr(a.val)
				if err != nil {
					return pcapUsage(cmd, fmt.Errorf("%s: want an IPv4 or IPv6 address, got %q", a.flag, a.val))
				}
				*a.addr = ip
			}
			if udpEncap != "" {
				ports, err := pcapParsePorts(udpEncap)
				if err != nil {
					return pcapUsage(cmd, fmt.Errorf("--udp-encap: %w", err))
				}
				opts.UDP = ports
			}
			if err := opts.Validate(); err != nil {
				return pcapUsage(cmd, err)
			}
			var st *pcaptool.EncryptStats
			err = pcapWithFiles(cmd, args[0], args[1], func(in io.Reader, out io.Writer) error {
				var err error
				st, err = pcaptool.Encrypt(in, out, opts)
				return err
			})
			if st != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "pcap encrypt: %s\n", st)
			}
			if err != nil {
				return err
			}
			if st.Failed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d IP packets could not be encrypted", st.Failed, st.Failed+st.Encrypted)}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVar(&specs, "sa", nil, "the outbound SA: spi=0x...,proto=esp,enc=...,key=0x...[,integ=...,authkey=0x...] or spi=0x...,proto=ah,integ=...,authkey=0x...; optional esn, seq=N (first to send)")
	f.StringVar(&mode, "mode", "", "tunnel or transport")
	f.StringVar(&tsrc, "tunnel-src", "", "outer source address (tunnel mode)")
	f.StringVar(&tdst, "tunnel-dst", "", "outer destination address (tunnel mode)")
	f.StringVar(&udpEncap, "udp-encap", "", "wrap ESP in UDP with these ports, SPORT:DPORT (e.g. 4500:4500); ESP only")
	return c
}

// pcapParsePorts parses "SPORT:DPORT".
func pcapParsePorts(s string) (*esp.UDPPorts, error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("want SPORT:DPORT, got %q", s)
	}
	sp, err1 := strconv.ParseUint(a, 10, 16)
	dp, err2 := strconv.ParseUint(b, 10, 16)
	if err1 != nil || err2 != nil || sp == 0 || dp == 0 {
		return nil, fmt.Errorf("want SPORT:DPORT with ports from 1 to 65535, got %q", s)
	}
	return &esp.UDPPorts{Src: uint16(sp), Dst: uint16(dp)}, nil
}

// pcapWithFiles opens IN ("-": stdin) and creates OUT ("-": stdout), runs fn,
// and removes a partly written OUT when fn fails.
func pcapWithFiles(cmd *cobra.Command, inPath, outPath string, fn func(io.Reader, io.Writer) error) error {
	var in io.Reader = cmd.InOrStdin()
	if inPath != "-" {
		f, err := os.Open(inPath)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
		if outPath != "-" {
			if a, err := f.Stat(); err == nil {
				if b, err := os.Stat(outPath); err == nil && os.SameFile(a, b) {
					return pcapUsage(cmd, fmt.Errorf("output %s is the input file", outPath))
				}
			}
		}
	}
	if outPath == "-" {
		return fn(in, cmd.OutOrStdout())
	}
	out, err := os.Create(outPath)
	if err != nil {
		return err
	}
	err = fn(in, out)
	if cerr := out.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		os.Remove(outPath)
	}
	return err
}
