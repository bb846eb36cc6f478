//! A real RTSP server for the camera tests: GStreamer's own gst-rtsp-server
//! (the `gstreamer-rtsp-server` crate over `libgstrtspserver-1.0`) serving
//! the test pattern as H.264, as an IP camera does, on a loopback port, with
//! or without RTSP basic auth. It runs its own GLib main loop on a thread
//! of its own, and [`RtspCamera::stop`] takes it away whole (listening
//! socket and every client connection), so a test can make a camera go
//! away and come back on the same port.

use std::thread::JoinHandle;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer_rtsp_server::prelude::*;
use gstreamer_rtsp_server::{
    RTSP_PERM_MEDIA_FACTORY_ACCESS, RTSP_PERM_MEDIA_FACTORY_CONSTRUCT,
    RTSP_TOKEN_MEDIA_FACTORY_ROLE, RTSPAuth, RTSPFilterResult, RTSPMediaFactory, RTSPServer,
    RTSPToken,
};

/// The mount point the camera is served at.
pub const MOUNT: &str = "/cam";

/// What the camera serves.
#[derive(Debug, Clone)]
pub struct RtspCameraSpec {
    pub port: u16,
    /// `Some((user, password))`: RTSP basic auth is required.
    pub credentials: Option<(String, String)>,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Frames between keyframes: the camera's own GOP.
    pub gop_frames: u32,
    pub bitrate_kbps: u32,
}

/// A running RTSP server; dropping it stops it.
pub struct RtspCamera {
    spec: RtspCameraSpec,
    main_loop: glib::MainLoop,
    context: glib::MainContext,
    server: RTSPServer,
    thread: Option<JoinHandle<()>>,
}

impl RtspCamera {
    /// Starts serving `spec` at `rtsp://127.0.0.1:PORT/cam`; returns once the
    /// port is listening.
    pub fn start(spec: RtspCameraSpec) -> RtspCamera {
        gst::init().unwrap();
        let server = RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(&spec.port.to_string());

        let factory = RTSPMediaFactory::new();
        // One pipeline for every client, as a camera has; the test pattern
        // moves, so every frame differs.
        factory.set_launch(&format!(
            "( videotestsrc is-live=true pattern=ball \
               ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 \
               ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate={kbps} \
               ! video/x-h264,profile=constrained-baseline \
               ! rtph264pay name=pay0 pt=96 config-interval=-1 )",
            w = spec.width,
            h = spec.height,
            fps = spec.fps,
            gop = spec.gop_frames,
            kbps = spec.bitrate_kbps,
        ));
        factory.set_shared(true);
        if let Some((user, password)) = &spec.credentials {
            let auth = RTSPAuth::new();
            let token = RTSPToken::builder()
                .field(RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
                .build();
            auth.add_basic(&RTSPAuth::make_basic(user, password), &token);
            server.set_auth(Some(&auth));
            let role = gst::Structure::builder("viewer")
                .field(RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                .field(RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                .build();
            factory.add_role_from_structure(&role);
        }
        server
            .mount_points()
            .expect("a new server has mount points")
            .add_factory(MOUNT, factory);

        let context = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&context), false);
        // Bind on this thread, so a busy port fails the test here.
        let source = server
            .attach(Some(&context))
            .unwrap_or_else(|e| panic!("RTSP server on 127.0.0.1:{}: {e}", spec.port));
        let thread = {
            let (context, main_loop) = (context.clone(), main_loop.clone());
            std::thread::Builder::new()
                .name("rtsp-camera".into())
                .spawn(move || {
                    context
                        .with_thread_default(|| {
                            main_loop.run();
                            // The listening socket closes with its source;
                            // what the removed clients and sessions left
                            // pending (closing sockets, unpreparing media)
                            // runs here.
                            if let Some(listening) = context.find_source_by_id(&source) {
                                listening.destroy();
                            }
                            while context.iteration(false) {}
                        })
                        .expect("the context is free");
                })
                .unwrap()
        };
        RtspCamera {
            spec,
            main_loop,
            context,
            server,
            thread: Some(thread),
        }
    }

    /// The URL a client opens; with the credentials in it when
    /// `with_credentials` (as a camera URL in a config carries them).
    pub fn url(&self, with_credentials: bool) -> String {
        match (&self.spec.credentials, with_credentials) {
            (Some((user, password)), true) => {
                format!(
                    "rtsp://{user}:{password}@127.0.0.1:{}{MOUNT}",
                    self.spec.port
                )
            }
            _ => format!("rtsp://127.0.0.1:{}{MOUNT}", self.spec.port),
        }
    }

    pub fn spec(&self) -> &RtspCameraSpec {
        &self.spec
    }

    /// The camera goes away: every client connection is closed (its
    /// sessions and media torn down) and the port stops listening.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let (server, main_loop) = (self.server.clone(), self.main_loop.clone());
        self.context.invoke(move || {
            if let Some(pool) = server.session_pool() {
                pool.filter(Some(&mut |_, _| RTSPFilterResult::Remove));
            }
            server.client_filter(Some(&mut |_, _| RTSPFilterResult::Remove));
            main_loop.quit();
        });
        let ended = thread.join();
        if !std::thread::panicking() {
            ended.expect("the RTSP server thread ends");
        }
    }
}

impl Drop for RtspCamera {
    fn drop(&mut self) {
        self.shut();
    }
}
