// Reports the width (CSS px) of the column this component sits in: on mount and after resizes.
export default function (component) {
  const { parentElement, setStateValue } = component;
  const host = parentElement.host || parentElement; // the shadow root's host spans the column
  if (!host.__probe) {
    let last = 0;
    let timer = null;
    const report = () => {
      const width = Math.round(host.getBoundingClientRect().width);
      if (width > 0 && Math.abs(width - last) >= 8) {
        last = width;
        setStateValue("width", width);
      }
    };
    const observer = new ResizeObserver(() => {
      clearTimeout(timer);
      timer = setTimeout(report, 250); // a rotation or a window drag ends before we redraw
    });
    observer.observe(host);
    report();
    host.__probe = () => {
      observer.disconnect();
      host.__probe = null;
    };
  }
  return host.__probe;
}
