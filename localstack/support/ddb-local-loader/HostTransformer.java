// See LoopbackAgent.java: makes Jetty connectors without a host bind `host`.
import java.lang.instrument.ClassFileTransformer;
import java.security.ProtectionDomain;

import jdk.internal.org.objectweb.asm.ClassReader;
import jdk.internal.org.objectweb.asm.ClassVisitor;
import jdk.internal.org.objectweb.asm.ClassWriter;
import jdk.internal.org.objectweb.asm.Label;
import jdk.internal.org.objectweb.asm.MethodVisitor;
import jdk.internal.org.objectweb.asm.Opcodes;

final class HostTransformer implements ClassFileTransformer {
    private static final String TARGET = "org/eclipse/jetty/server/AbstractNetworkConnector";
    private final String host;

    HostTransformer(String host) {
        this.host = host;
    }

    @Override
    public byte[] transform(ClassLoader loader, String className, Class<?> redefined,
                            ProtectionDomain domain, byte[] bytes) {
        if (!TARGET.equals(className)) {
            return null;
        }
        try {
            ClassReader reader = new ClassReader(bytes);
            // passing the reader copies everything we do not touch unchanged
            ClassWriter writer = new ClassWriter(reader, 0);
            reader.accept(new ClassVisitor(Opcodes.ASM8, writer) {
                @Override
                public MethodVisitor visitMethod(int access, String name, String descriptor,
                                                 String signature, String[] exceptions) {
                    if (!"getHost".equals(name) || !"()Ljava/lang/String;".equals(descriptor)) {
                        return super.visitMethod(access, name, descriptor, signature, exceptions);
                    }
                    // new body: String h = this._host; return h != null ? h : host;
                    MethodVisitor mv = super.visitMethod(access, name, descriptor, signature, exceptions);
                    mv.visitCode();
                    mv.visitVarInsn(Opcodes.ALOAD, 0);
                    mv.visitFieldInsn(Opcodes.GETFIELD, TARGET, "_host", "Ljava/lang/String;");
                    mv.visitInsn(Opcodes.DUP);
                    Label done = new Label();
                    mv.visitJumpInsn(Opcodes.IFNONNULL, done);
                    mv.visitInsn(Opcodes.POP);
                    mv.visitLdcInsn(host);
                    mv.visitLabel(done);
                    mv.visitFrame(Opcodes.F_SAME1, 0, null, 1, new Object[] {"java/lang/String"});
                    mv.visitInsn(Opcodes.ARETURN);
                    mv.visitMaxs(2, 1);
                    mv.visitEnd();
                    // returning null drops the original body
                    return null;
                }
            }, 0);
            System.err.println("loopback agent: Jetty connectors without a host bind " + host);
            return writer.toByteArray();
        } catch (Throwable t) {
            System.err.println("loopback agent: cannot rewrite " + className + ": " + t);
            return null;
        }
    }
}
