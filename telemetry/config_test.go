package telemetry

import (
	"context"
	"strings"
	"testing"

	"github.com/agentd-dev/agentd/model"
)

func TestFiltersDecideWhichContainersAreExported(t *testing.T) {
	busybox := &model.Container{ImageName: "busybox", ImageTags: []string{"1.36"}}
	local := &model.Container{ImageName: "local/busybox", ImageTags: []string{"latest"}}
	quay := &model.Container{ImageName: "quay.io/prometheus/node-exporter", ImageTags: []string{"v1.8.0"}}
	noImage := &model.Container{}
	tests := []struct {
		name string
		cfg  Config
		typ  model.EngineType
		ctr  *model.Container
		want bool
	}{
		{"no filters export everything", Config{}, model.Docker, busybox, true},
		{"an engine type outside include_engines is skipped", Config{IncludeEngines: []model.EngineType{model.Podman}}, model.Docker, busybox, false},
		{"an engine type in include_engines is kept", Config{IncludeEngines: []model.EngineType{model.Docker}}, model.Docker, busybox, true},
		{"exclude_engines wins over include_engines", Config{IncludeEngines: []model.EngineType{model.Docker}, ExcludeEngines: []model.EngineType{model.Docker}}, model.Docker, busybox, false},
		{"an image excluded by its reported name", Config{ExcludeImages: []string{"busybox"}}, model.Docker, busybox, false},
		{"an image excluded by its fully qualified name", Config{ExcludeImages: []string{"docker.io/library/*"}}, model.Docker, busybox, false},
		{"an image excluded with its tag", Config{ExcludeImages: []string{"busybox:1.*"}}, model.Docker, busybox, false},
		{"another tag does not match", Config{ExcludeImages: []string{"busybox:2.*"}}, model.Docker, busybox, true},
		{"a docker.io image excluded by its short form", Config{ExcludeImages: []string{"local/*"}}, model.Podman, &model.Container{ImageName: "docker.io/local/busybox"}, false},
		{"a registry image excluded by its registry", Config{ExcludeImages: []string{"quay.io/*/*"}}, model.CRI, quay, false},
		{"include_images keeps only matching images", Config{IncludeImages: []string{"local/*"}}, model.Docker, busybox, false},
		{"include_images keeps a matching image", Config{IncludeImages: []string{"local/*"}}, model.Docker, local, true},
		{"a container without an image is not matched by include_images", Config{IncludeImages: []string{"*"}}, model.Docker, noImage, false},
		{"a container without an image is not matched by exclude_images", Config{ExcludeImages: []string{"*"}}, model.Docker, noImage, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.keep(tt.typ, tt.ctr); got != tt.want {
				t.Errorf("keep(%s, %q %v) = %v, want %v", tt.typ, tt.ctr.ImageName, tt.ctr.ImageTags, got, tt.want)
			}
		})
	}
}

func TestExportWithoutExportersIsAnError(t *testing.T) {
	err := NewOTLPMetrics(nil, 0).ExportMetrics(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "no exporter") {
		t.Fatalf("got %v, want an error saying no exporter is configured", err)
	}
}
