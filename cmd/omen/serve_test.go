package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseFeatures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
		want   map[string]bool
		err    string
	}{
		{"none", nil, map[string]bool{}, ""},
		{"one", []string{"created-timestamp-zero-ingestion"}, map[string]bool{"created-timestamp-zero-ingestion": true}, ""},
		{"comma separated, spaces and empties", []string{" created-timestamp-zero-ingestion ,,"}, map[string]bool{"created-timestamp-zero-ingestion": true}, ""},
		{"repeated", []string{"created-timestamp-zero-ingestion", "created-timestamp-zero-ingestion"}, map[string]bool{"created-timestamp-zero-ingestion": true}, ""},
		{"unknown", []string{"created-timestamp-zero-ingestion,exemplar-storage"}, nil, `unknown feature "exemplar-storage"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFeatures(tc.values)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}
