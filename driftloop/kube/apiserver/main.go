// Command driftloop-kube-apiserver is k8s.io/apiextensions-apiserver made usable on its own by kubectl.
//
// Inside kube-apiserver, the aggregator serves /apis and the OpenAPI documents. The standalone upstream
// binary therefore lacks them: apiserver.Config.Complete sets EnableDiscovery = false, so kubectl and
// client-go fail with "couldn't get current server API group list", and kubectl's validation fails with
// "failed to download openapi". This command runs the same server with the same flags and adds
//   - /apis: aggregated discovery (apidiscovery.k8s.io/v2, what kubectl >= 1.30 asks for) from the
//     server's own discovery manager, and the legacy APIGroupList built from Established CRDs;
//   - /openapi/v2 and CRD schemas in /openapi/v3.
package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"sort"

	"github.com/spf13/cobra"
	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/endpoints/discovery/aggregated"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/component-base/cli"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	o := options.NewCustomResourceDefinitionsServerOptions(os.Stdout, os.Stderr)
	cmd := &cobra.Command{
		Use:   "driftloop-kube-apiserver",
		Short: "apiextensions-apiserver (CRDs and custom resources) with /apis discovery, for tests",
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return o.ServerRunOptions.ComponentGlobalsRegistry.Set()
		},
		RunE: func(c *cobra.Command, _ []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return run(c.Context(), o)
		},
	}
	cmd.SetContext(ctx)
	o.AddFlags(cmd.Flags())
	os.Exit(cli.Run(cmd))
}

func run(ctx context.Context, o *options.CustomResourceDefinitionsServerOptions) error {
	config, err := o.Config()
	if err != nil {
		return err
	}
	// Upstream configures OpenAPI v3 only; without a v2 config the CRD OpenAPI controllers never start,
	// so /openapi/v2 is missing and /openapi/v3 lacks the CRDs, and kubectl's client-side validation fails
	// with "failed to download openapi". Serve both, as kube-apiserver does.
	config.GenericConfig.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(
		openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(generatedopenapi.GetOpenAPIDefinitions),
		openapinamer.NewDefinitionNamer(apiserver.Scheme, scheme.Scheme),
	)
	server, err := config.Complete().New(genericapiserver.NewEmptyDelegate())
	if err != nil {
		return err
	}
	generic := server.GenericAPIServer
	var legacy http.Handler = groupList{server}
	agg := legacy
	if generic.AggregatedDiscoveryGroupManager != nil {
		agg = generic.AggregatedDiscoveryGroupManager
	}
	wrapped := aggregated.WrapAggregatedDiscoveryToHandler(legacy, agg)
	generic.Handler.GoRestfulContainer.Add(wrapped.GenerateWebService("/apis", metav1.APIGroupList{}))
	return generic.PrepareRun().RunWithContext(ctx)
}

// groupList serves the legacy /apis document: apiextensions.k8s.io plus every Established CRD's group.
type groupList struct {
	server *apiserver.CustomResourceDefinitions
}

func (g groupList) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	crds, err := g.server.Informers.Apiextensions().V1().CustomResourceDefinitions().Lister().List(labels.Everything())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	versions := map[string]map[string]bool{"apiextensions.k8s.io": {"v1": true}}
	for _, crd := range crds {
		if !apihelpers.IsCRDConditionTrue(crd, apiextensionsv1.Established) {
			continue
		}
		for _, v := range crd.Spec.Versions {
			if v.Served {
				if versions[crd.Spec.Group] == nil {
					versions[crd.Spec.Group] = map[string]bool{}
				}
				versions[crd.Spec.Group][v.Name] = true
			}
		}
	}
	list := metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
	for group, served := range versions {
		names := make([]string, 0, len(served))
		for name := range served {
			names = append(names, name)
		}
		sort.Slice(names, func(i, j int) bool { return version.CompareKubeAwareVersionStrings(names[i], names[j]) > 0 })
		apiGroup := metav1.APIGroup{Name: group}
		for _, name := range names {
			apiGroup.Versions = append(apiGroup.Versions, metav1.GroupVersionForDiscovery{GroupVersion: group + "/" + name, Version: name})
		}
		apiGroup.PreferredVersion = apiGroup.Versions[0]
		list.Groups = append(list.Groups, apiGroup)
	}
	sort.Slice(list.Groups, func(i, j int) bool { return list.Groups[i].Name < list.Groups[j].Name })
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(list)
}
