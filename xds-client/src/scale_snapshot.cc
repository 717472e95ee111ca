// Synthetic snapshots for the xDS scale benchmark (bench/xds_scale.py): many EDS clusters and endpoints.

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "skiff/xds/test_server.h"
#include "skiff/xds/types.h"

namespace skiff::xds {

ResourceMap generateScaleSnapshot(int clusters, int endpoints_per_cluster, const std::string& prefix) {
  ResourceMap out;
  auto& cds = out[std::string(kClusterType)];
  auto& eds = out[std::string(kEndpointType)];
  uint32_t next_address = (10u << 24) + 1;  // 10.0.0.1, then upwards: every host distinct
  for (int i = 0; i < clusters; ++i) {
    const std::string name = prefix + std::to_string(i);
    envoy::config::cluster::v3::Cluster cluster;
    cluster.set_name(name);
    cluster.set_type(envoy::config::cluster::v3::Cluster::EDS);
    cluster.mutable_connect_timeout()->set_seconds(1);
    auto* eds_config = cluster.mutable_eds_cluster_config()->mutable_eds_config();
    eds_config->mutable_ads();
    eds_config->set_resource_api_version(envoy::config::core::v3::V3);
    cds[name].PackFrom(cluster);

    envoy::config::endpoint::v3::ClusterLoadAssignment cla;
    cla.set_cluster_name(name);
    auto* locality = cla.add_endpoints();
    for (int j = 0; j < endpoints_per_cluster; ++j, ++next_address) {
      const uint32_t a = next_address;
      auto* sa =
          locality->add_lb_endpoints()->mutable_endpoint()->mutable_address()->mutable_socket_address();
      sa->set_address(std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." +
                      std::to_string((a >> 8) & 255) + "." + std::to_string(a & 255));
      sa->set_port_value(8080);
    }
    eds[name].PackFrom(cla);
  }
  return out;
}

}  // namespace skiff::xds
