// The JVM example app for bluegreen-hooks: three of these per colour stand in for a Spring Boot service.
// Embedded Apache Tomcat 10 (the servlet container Spring Boot embeds), Debian's libtomcat10-java, no framework.
// Environment:
//   APP_VERSION   served on /                               (default "dev")
//   HOST, PORT    where to listen                           (default 0.0.0.0:8080)
//   START_DELAY   seconds to wait before listening, as a Spring context would while it starts (default 0)
//   UNHEALTHY=1   /actuator/health answers 503 {"status":"DOWN"} and / answers 503: a version that starts but cannot
//                 serve (its database is unreachable, say) and never gets healthy
//   ALLOC_MB=N    hold N MiB of live heap before listening (with a container memory limit: OOM-killed at start)
// Paths: /  -> the version; /actuator/health -> {"status":"UP"}; /slow?N -> the version after N seconds.
// SIGTERM (docker stop): the connector stops accepting, requests in flight finish (up to 30 s), then exit 0.
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import org.apache.catalina.Context;
import org.apache.catalina.connector.Connector;
import org.apache.catalina.startup.Tomcat;

public final class App {
    static final List<byte[]> HELD = new ArrayList<>();

    static String env(String name, String dflt) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? dflt : v;
    }

    static void log(String version, String msg) {
        System.out.println("example jvm app " + version + ": " + msg);
        System.out.flush();
    }

    static HttpServlet text(int status, String type, String body) {
        return new HttpServlet() {
            @Override
            protected void doGet(HttpServletRequest req, HttpServletResponse resp) throws IOException {
                resp.setStatus(status);
                resp.setContentType(type);
                resp.getWriter().print(body);
            }
        };
    }

    public static void main(String[] args) throws Exception {
        long t0 = System.nanoTime();
        String version = env("APP_VERSION", "dev");
        String host = env("HOST", "0.0.0.0");
        int port = Integer.parseInt(env("PORT", "8080"));
        double delay = Double.parseDouble(env("START_DELAY", "0"));
        boolean unhealthy = "1".equals(env("UNHEALTHY", "0"));
        int allocMb = Integer.parseInt(env("ALLOC_MB", "0"));

        for (int i = 0; i < allocMb; i++) {   // touched, so the pages are really used
            byte[] mb = new byte[1 << 20];
            for (int j = 0; j < mb.length; j += 4096) {
                mb[j] = 1;
            }
            HELD.add(mb);
        }
        if (allocMb > 0) {
            log(version, "holding " + allocMb + " MiB");
        }
        if (delay > 0) {
            log(version, "starting in " + delay + "s");
            Thread.sleep((long) (delay * 1000));
        }

        Tomcat tomcat = new Tomcat();
        tomcat.setBaseDir(System.getProperty("java.io.tmpdir") + "/tomcat-" + port);
        Connector connector = new Connector();
        connector.setPort(port);
        connector.setProperty("address", host);
        connector.setProperty("executorTerminationTimeoutMillis", "30000");
        tomcat.setConnector(connector);
        Context ctx = tomcat.addContext("", null);
        ((org.apache.catalina.core.StandardContext) ctx).setUnloadDelay(30000);
        Tomcat.addServlet(ctx, "index", unhealthy
                ? text(503, "text/plain", "DOWN\n")
                : text(200, "text/plain", version + "\n")).addMapping("/");
        Tomcat.addServlet(ctx, "health", unhealthy
                ? text(503, "application/json", "{\"status\":\"DOWN\"}")
                : text(200, "application/json", "{\"status\":\"UP\"}")).addMapping("/actuator/health");
        Tomcat.addServlet(ctx, "slow", new HttpServlet() {
            @Override
            protected void doGet(HttpServletRequest req, HttpServletResponse resp) throws IOException {
                String q = req.getQueryString();
                try {
                    Thread.sleep((long) (Double.parseDouble(q == null ? "1" : q) * 1000));
                } catch (InterruptedException | NumberFormatException e) {
                    resp.sendError(400);
                    return;
                }
                resp.setContentType("text/plain");
                resp.getWriter().print(version + "\n");
            }
        }).addMapping("/slow");

        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            log(version, "stopping");
            try {
                tomcat.stop();
                tomcat.destroy();
            } catch (Exception e) {
                e.printStackTrace();
            }
        }));
        tomcat.start();
        log(version, (unhealthy ? "UNHEALTHY=1, /actuator/health will answer 503; " : "")
                + "listening on " + host + ":" + port + " after "
                + String.format("%.2f", (System.nanoTime() - t0) / 1e9) + "s");
        tomcat.getServer().await();
    }
}
