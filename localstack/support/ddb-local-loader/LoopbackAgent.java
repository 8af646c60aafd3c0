// Java agent that LocalStack attaches to DynamoDB Local as
// $LIB/dynamodb-local/2/ddb-local-loader-0.1.jar (-javaagent:...).
//
// LocalStack's own agent of that name patches DynamoDB Local to allow more
// than 20 GSIs and is downloaded at install time, which is impossible offline.
// This replacement does something else that we need: DynamoDB Local has no
// option for its listen address and its Jetty server binds every interface.
// The agent rewrites Jetty's AbstractNetworkConnector.getHost() so that a
// connector without an explicit host binds 127.0.0.1 (override with
// -Dlocal.bind.host=...).  The rewrite uses the ASM copy inside the JDK
// (jdk.internal.org.objectweb.asm, JDK 17-23); on a JDK without it the agent
// prints a warning and leaves DynamoDB Local unchanged.
import java.lang.instrument.Instrumentation;
import java.util.Map;
import java.util.Set;

public final class LoopbackAgent {
    private LoopbackAgent() {}

    public static void premain(String args, Instrumentation inst) {
        String host = System.getProperty("local.bind.host", "127.0.0.1");
        if (host.isEmpty()) {
            return;
        }
        try {
            // the internal ASM package is not exported; open it to this agent
            Module base = Object.class.getModule();
            Module self = LoopbackAgent.class.getModule();
            inst.redefineModule(base, Set.of(),
                    Map.of("jdk.internal.org.objectweb.asm", Set.of(self)),
                    Map.of(), Set.of(), Map.of());
            // loaded only now, after the export exists
            inst.addTransformer(new HostTransformer(host));
        } catch (Throwable t) {
            System.err.println("loopback agent disabled (DynamoDB Local binds all interfaces): " + t);
        }
    }
}
