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
		Short: "Two peers in one process over userspace network stacks, with traffic through ESP (no root, no files)",
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
	c.Flags().StringVar(&opts.Enc, "enc", "aes128gcm16", "ESP transform (an AEAD: aes128gcm16, aes256gcm16, chacha20poly1305, aes128gmac)")
	c.Flags().StringVar(&level, "log-level", "", "show the daemons' logs at this level")
	return c
}
