"""ML2 mechanism driver for the CTD test bed: binds every port with no agent.

The bed runs Neutron without any L2 agent (there is no data plane), and ML2 leaves a port
unbound (binding:vif_type "binding_failed") unless some mechanism driver claims it, which makes
Nova fail the server. This driver claims every port on its first segment. Test bed only.
"""
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api


class BindEveryPort(api.MechanismDriver):

    def initialize(self):
        pass

    def bind_port(self, context):
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], portbindings.VIF_TYPE_OVS,
                                {portbindings.CAP_PORT_FILTER: True},
                                status='ACTIVE')
            return
