package main

import (
	"github.com/spf13/cobra"

	"github.com/goipsec/goipsec/internal/demo"
)

func init() { subcommands = append(subcommands, newDemoCmd) }

func newDemoCmd() *cobra.Command {
	var opts demo.Options
	var level string
	c := &cobra.Command{
		Use:   "demo",
		Short: "Two peers in one process over userspace network stacks, negotiating with IKEv2, with traffic through ESP (no root, no files)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if level != "" {
				log, err := newLogger(level, "console")
				if err != nil {
					return &exitError{code: 2, err: err}
				}
				opts.Log = log
			}
			_, err := demo.Run(cmd.Context(), cmd.OutOrStdout(), opts)
			return err
		},
	}
	c.Flags().Int64Var(&opts.Bytes, "bytes", 64<<20, "size of the bulk transfer")
	c.Flags().StringVar(&opts.Enc, "enc", "aes128gcm16", "ESP proposal, strongSwan-style (aes128gcm16, aes256gcm16, chacha20poly1305, aes256-sha256, ...)")
	c.Flags().StringVar(&opts.IKE, "ike", "aes128gcm16-prfsha256-x25519", "IKE proposal, strongSwan-style (aes256-sha384-ecp384, chacha20poly1305-prfsha256-modp2048, ...)")
	c.Flags().StringVar(&level, "log-level", "", "show the daemons' logs at this level")
	return c
}
